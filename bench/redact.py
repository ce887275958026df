"""Secrets never reach logs, manifests, cell records or reports.

Two rules, applied to whatever the bench writes about itself:
- a value under a key that names a secret (`HF_TOKEN`, `api_key`, `*_KEY`, `*_TOKEN`,
  `*_SECRET`, passwords, credentials) becomes `[REDACTED]`, in mappings and in
  command lines (`--hf-token X`, `--api-key=X`);
- the value of every such environment variable is replaced wherever it appears in a
  string (an error message that echoes a URL with a token, a traceback).
Counting keys like `max_new_tokens` or `top_k` are not secrets: only the suffixes
above match, so they stay readable.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

MASK = "[REDACTED]"
_SECRET_NAME = re.compile(r"(?i)(^|[_\-.])(api[_\-]?key|key|token|secret|password|passwd|credentials?|auth)$"
                          r"|secret|password|passwd")
_MIN_LEN = 6  # shorter values ("1", "true") would mangle unrelated text


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(str(name).strip("-")))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and v and len(v) >= _MIN_LEN}
    return sorted(values, key=len, reverse=True)  # longest first: one secret may contain another


def redact_text(text: str, values: Iterable[str] | None = None) -> str:
    for value in secret_values() if values is None else values:
        text = text.replace(value, MASK)
    return text


def redact_argv(argv: Iterable[str], values: Iterable[str] | None = None) -> list[str]:
    values = secret_values() if values is None else list(values)
    out, hide_next = [], False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag.startswith("-") and is_secret_name(flag):
            if eq:
                out.append(f"{flag}={MASK}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_text(arg, values))
    return out


def redact(obj: Any, values: Iterable[str] | None = None) -> Any:
    """A copy of `obj` (mappings, lists, strings) with secrets masked."""
    values = secret_values() if values is None else list(values)
    if isinstance(obj, Mapping):
        return {k: MASK if is_secret_name(str(k)) and obj[k] not in (None, "") else redact(v, values)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v, values) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, values)
    return obj

"""Secrets never reach logs, manifests, rows, cell records, reports or error messages.

What is a secret, precisely:
- the value of an environment variable whose name names a secret (`HF_TOKEN`,
  `OPENAI_API_KEY`, `AWS_SECRET_ACCESS_KEY`, `DB_PASSWORD`);
- the value of a config key or `--set` option whose name names a secret (`api_key`,
  `client_secret`, `password`), registered once with `collect`/`add_secret` when the
  config is built.
A name names a secret by its words (split at `_ - .` and camelCase), not by
substring: its last word is token, secret, password, passwd, credential(s), apikey
or auth; or it is `<api|access|secret|private|client|auth>_key` (any `*_KEY` for an
ALL-CAPS environment variable); or one of its words is secret or password. So
`prompt_tokens`, `max_new_tokens`, `top_k`, `cache_key` and `secretary` are not secrets.

How: those exact values (at least `MIN_LEN` characters; shorter ones would mangle
unrelated text) are replaced by `[REDACTED]` wherever they occur in what the bench
writes or prints (`jsonl.encode`, `RunStore.write_text`, the console, errors), in their
plain, JSON-escaped and HTML-escaped forms. Values under secret-named keys are masked
whatever their length. A name (task, strategy label, model) holding a secret is refused
up front (`bench.names`), so masking never has to touch a join key.
"""
from __future__ import annotations

import functools
import html
import json
import os
import re
from typing import Any, Iterable, Mapping

MASK = "[REDACTED]"
MIN_LEN = 6
_LAST = {"token", "secret", "password", "passwd", "pwd", "passphrase", "credential", "credentials", "apikey",
         "auth", "authorization", "bearer"}
_KEY_OWNERS = {"api", "access", "secret", "private", "client", "auth", "signing", "encryption", "master"}
_ANY = {"secret", "password", "passwd"}
# The shell's working folders: "pwd" there is a path, and masking it hid every run folder.
_NOT_SECRETS = {"PWD", "OLDPWD"}
_registered: set[str] = set()


def _words(name: str) -> list[str]:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name).strip("-"))
    return [w for w in re.split(r"[_\-.\s]+", name.lower()) if w]


def is_secret_name(name: Any) -> bool:
    return _secret_name(str(name))


@functools.lru_cache(maxsize=4096)  # asked for every environment variable on every write
def _secret_name(name: str) -> bool:
    words = _words(name)
    if not words or name in _NOT_SECRETS:
        return False
    if words[-1] in _LAST or _ANY.intersection(words):
        return True
    if words[-1] == "key" and len(words) > 1:
        return words[-2] in _KEY_OWNERS or name.strip("-").isupper()
    return False


def add_secret(value: Any) -> None:
    """Register a value to be masked wherever the bench writes it (from now on, in this process)."""
    if isinstance(value, str) and len(value) >= MIN_LEN:
        _registered.add(value)


def collect(obj: Any) -> None:
    """Register every string under a secret-named key, at any depth of `obj`."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if is_secret_name(key) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                add_secret(str(value))
            else:
                collect(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            collect(value)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and v and len(v) >= MIN_LEN} | _registered
    forms = set()
    for v in values:
        forms.update((v, html.escape(v), json.dumps(v, ensure_ascii=False)[1:-1], json.dumps(v)[1:-1]))
    return sorted(forms, key=len, reverse=True)  # longest first: one secret may contain another


def redact_text(text: str, values: Iterable[str] | None = None) -> str:
    for value in secret_values() if values is None else values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_argv(argv: Iterable[str], values: Iterable[str] | None = None) -> list[str]:
    """A command line with secret flags' values (`--api-key X`, `--hf-token=X`), secret
    `--set` options (`--set x.password=X`) and every known secret value masked."""
    values = secret_values() if values is None else list(values)
    out, hide_next, set_next = [], False, False
    for arg in map(str, argv):
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        if set_next:
            out.append(_mask_assignment(arg, values))
            set_next = False
            continue
        flag, eq, rest = arg.partition("=")
        if flag == "--set":
            if eq:
                out.append(f"--set={_mask_assignment(rest, values)}")
            else:
                out.append(arg)
                set_next = True
            continue
        if flag.startswith("-") and is_secret_name(flag):
            out.append(f"{flag}={MASK}" if eq else arg)
            hide_next = not eq
            continue
        out.append(_mask_assignment(arg, values) if eq else redact_text(arg, values))
    return out


def _mask_assignment(item: str, values: list[str]) -> str:
    key, eq, value = item.partition("=")
    if eq and is_secret_name(key.rpartition(".")[2]) and value:
        return f"{key}={MASK}"
    return redact_text(item, values)


def redact(obj: Any, values: Iterable[str] | None = None) -> Any:
    """A copy of `obj` (mappings, lists, strings) with secrets masked."""
    values = secret_values() if values is None else list(values)
    if not values and not isinstance(obj, Mapping) and not isinstance(obj, (list, tuple)):
        return obj
    if isinstance(obj, Mapping):
        return {k: MASK if is_secret_name(str(k)) and isinstance(obj[k], (str, int, float))
                and not isinstance(obj[k], bool) and obj[k] != "" else redact(v, values)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v, values) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, values)
    return obj


def redact_values(obj: Any, values: list[str]) -> Any:
    """Only the known secret values masked (keys untouched): for records the bench made."""
    if not values:
        return obj
    if isinstance(obj, str):
        return redact_text(obj, values)
    if isinstance(obj, Mapping):
        return {k: redact_values(v, values) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_values(v, values) for v in obj]
    return obj


class MaskedStream:
    """A text stream (the console's) that masks secret values in what passes through."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact_text(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

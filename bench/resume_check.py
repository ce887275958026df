"""`bench run --resume RUN`: a run folder is untrusted input.

A folder may come from a colleague or a CI artifact, and its manifest.json is plain
text anyone can edit. So what would let it run code or read files outside itself is
taken only from the command line:
- `trust_remote_code` is whatever `--trust-remote-code` says (a stored `true` without
  the flag is refused);
- task specs and model entries other than built-in names (paths, hub ids) must be
  repeated with `--tasks` / `--model`; a path inside the run folder is fine; a model
  backend mapping is confirmed by its label (`--model served`), unless it is a server
  on this machine (127.0.0.1, localhost, ::1) sent no API key;
- a path among strategy options cannot be confirmed by a flag: the run continues from
  the user's own config instead (`bench run CONFIG --name RUN` continues the folder);
- the output folder is the run folder's parent, never a stored `out`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.errors import BenchError

MAX_MANIFEST_BYTES = 20_000_000


def read_stored(manifest: Path) -> dict[str, Any]:
    from bench.jsonl import loads_bounded

    try:
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"{manifest.stat().st_size:,} bytes, over the {MAX_MANIFEST_BYTES:,} limit")
        stored = loads_bounded(manifest.read_text(encoding="utf-8"))["config"]
        if not isinstance(stored, dict):
            raise TypeError(f"'config' is a {type(stored).__name__}, not a mapping")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{manifest} is damaged ({exc}); start the run again with its config") from None
    return stored


def check_stored(stored: dict[str, Any], run_dir: Path, tasks: list[str] | None, models: list[str] | None,
                 trust_remote_code: bool) -> None:
    """Refuse (BenchError naming the flag to pass) or accept; sets trust_remote_code from the flag."""
    from bench.models import ALIASES
    from tasks import TASKS

    where = f"{run_dir / 'manifest.json'}"
    new_run = f"bench run YOUR_CONFIG.yaml --out {run_dir.parent} --name {run_dir.name}"
    if stored.get("trust_remote_code") is True and not trust_remote_code:
        raise BenchError(f"{where} asks for trust_remote_code (running the model's own Python code); a run folder "
                         "cannot grant that. If you trust the model, pass --trust-remote-code with --resume")
    stored["trust_remote_code"] = trust_remote_code
    inside = _inside_test(run_dir)

    stored_tasks = _as_list(stored.get("tasks"))
    external = [t for t in stored_tasks if not (isinstance(t, str) and (t in TASKS or inside(t)))]
    _confirm(where, "task spec(s)", "--tasks", stored_tasks, external, tasks)

    stored_models = _as_list(stored.get("models"))
    shown = [m if isinstance(m, str) else _label(m, where) for m in stored_models]
    external = [m if isinstance(m, str) else _short(m) for m in stored_models
                if not (isinstance(m, str) and m in ALIASES or inside(m) or _local_server(m))]
    _confirm(where, "model(s)", "--model", shown, external, models)

    for key in ("strategies", "strategy_options"):
        for path in _paths_in(stored.get(key)):
            if not inside(path):
                raise BenchError(f"{where}: the stored {key} name the path {path!r} outside the run folder; a run "
                                 f"folder cannot choose what the bench reads. Continue from your own config: "
                                 f"{new_run}")


def _confirm(where: str, what: str, flag: str, stored: list[Any], external: list[Any],
             given: list[str] | None) -> None:
    if given is not None and given != stored:
        raise BenchError(f"{flag} {','.join(given)} differs from the run's stored {','.join(map(str, stored))}; "
                         f"with --resume, {flag} only confirms the stored value (start a new run for others)")
    if external and given is None:
        shown = ",".join(map(str, stored))
        raise BenchError(f"{where} loads {what} {', '.join(map(repr, external))} from outside the run folder; a run "
                         f"folder is untrusted, so confirm with {flag} {shown}")


def _local_server(entry: Any) -> bool:
    """A server on this machine, sent no API key: the task data stays here."""
    from urllib.parse import urlparse

    if not isinstance(entry, dict) or entry.get("backend") != "openai" or entry.get("api_key_env"):
        return False
    host = urlparse(str(entry.get("base_url", "http://127.0.0.1:8000/v1"))).hostname
    return host in ("127.0.0.1", "localhost", "::1")


def _label(entry: Any, where: str) -> str:
    from bench.backends import ModelSpec

    return ModelSpec.parse(entry, f"{where}: config.models").label


def _inside_test(run_dir: Path):
    root = run_dir.resolve()

    def inside(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        path = Path(value).expanduser()
        real = (path if path.is_absolute() else Path.cwd() / path).resolve()
        return real == root or root in real.parents
    return inside


def _paths_in(obj: Any) -> list[str]:
    """String values that look like file-system paths, at any depth."""
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in _paths_in(v)]
    if isinstance(obj, list):
        return [p for v in obj for p in _paths_in(v)]
    if isinstance(obj, str) and (obj.startswith(("/", "~", "./", "../")) or "/" in obj and Path(obj).exists()):
        return [obj]
    return []


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 80 else text[:77] + "..."

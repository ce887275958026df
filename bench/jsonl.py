"""Checksummed, locked JSON Lines: the one way the bench appends records to disk.

Rules:
- Each line is one JSON object carrying `"_sha"`: the first 16 hex digits of the
  sha256 of the record's canonical JSON (sorted keys). A reader recomputes it, so a
  torn, truncated or bit-flipped line is detected and counted, never used.
- An append takes an exclusive `fcntl.flock` on the file, so several processes can
  append to one file without interleaving; a line is written whole or rolled back
  (the file is cut back to its size before the append), so a failed write (a full
  disk) never leaves a partial line behind.
- If a killed writer left a torn last line, the next append starts on a fresh line,
  so its own first record is not glued to the damage.
- Lines without `_sha` (written before checksums existed) are read as unverified.
- Keyed integrity: each line also carries `"_kid"` and `"_mac"`, an HMAC-SHA256 of the
  same canonical JSON under this user's key (`integrity.key` in the config folder,
  created 0600 on the first write; `ADAPTBENCH_KEY_FILE` overrides). A line whose
  `_kid` is this user's key but whose MAC does not match was edited (its plain
  checksum may well have been recomputed): it is counted as bad and never used. A
  line signed by another key or not at all (a colleague's run folder, or a line
  stripped of its MAC) is used but counted as `unsigned`, so readers can say so.
- Secret values (`bench.redact`) are masked in every record before it is encoded.
- A line nested deeper than `MAX_DEPTH` is counted as bad, never parsed recursively.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError

CHECK = "_sha"
MAC, KID = "_mac", "_kid"
MAX_DEPTH = 64
_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(BenchError):
    """The disk (or quota) is full; what was already written is intact."""

    exit_code = 3


def disk_error(exc: OSError, path: Path | str) -> BenchError | OSError:
    if exc.errno in _FULL:
        return DiskFullError(f"disk full while writing {path} ({exc.strerror}); nothing already written was "
                             "changed. Free some space, then continue with `bench run --resume RUN`.")
    return exc


def jsonable(obj: Any) -> Any:
    """json.dumps' fallback for what records carry: sets, tuples, paths, numpy scalars."""
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _body(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=jsonable)


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


_KEYS: dict[str, tuple[bytes, str]] = {}


def key_path() -> Path:
    env = os.environ.get("ADAPTBENCH_KEY_FILE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("adaptbench")) / "integrity.key"


def integrity_key(create: bool = False) -> tuple[bytes, str] | None:
    """(key, key id) of this user, made on the first write; None when there is none yet."""
    path = key_path()
    if str(path) in _KEYS:
        return _KEYS[str(path)]
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        if not create:
            return None
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32) + "\n")
        except FileExistsError:
            pass  # another process made it first: use theirs
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    found = (key, hashlib.sha256(key).hexdigest()[:8])
    _KEYS[str(path)] = found
    return found


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def encode(record: dict[str, Any], key: tuple[bytes, str] | None = None, secrets: list[str] | None = None) -> str:
    """One checksummed (and, with `key`, signed) line, with its newline; the values in
    `secrets` (plain and JSON-escaped forms, see bench.redact) are masked."""
    record = {k: v for k, v in record.items() if k not in (CHECK, MAC, KID)}
    body = _body(record)
    if secrets and any(s in body for s in secrets):  # a substring test first: walking every row is slow
        from bench.redact import redact_values

        body = _body(redact_values(record, secrets))
    # Round-trip first, so the checksum covers exactly what a reader will re-serialise.
    body = _body(json.loads(body))
    head = f'{{"{CHECK}": "{_digest(body)}"'
    if key is not None:
        head += f', "{KID}": "{key[1]}", "{MAC}": "{_mac(key[0], body)}"'
    return (head + "}" if body == "{}" else f"{head}, {body[1:]}") + "\n"


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON `text` nests more than `limit` levels (counted outside strings)."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case, at C speed
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def loads_bounded(text: str, limit: int = MAX_DEPTH) -> Any:
    """json.loads with a nesting limit: ValueError instead of a RecursionError."""
    if too_deep(text, limit):
        raise ValueError(f"nested deeper than {limit} levels")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {limit} levels") from None


def decode(line: str, key: tuple[bytes, str] | None = None) -> tuple[dict[str, Any] | None, str]:
    """(record, state): "ok" (checksum, and MAC by `key`, match), "unsigned" (checksum
    matches, no MAC by `key`), "unverified" (no checksum) or "bad"."""
    if not line.endswith("\n"):
        return None, "bad"  # torn: the writer died before the newline
    try:
        obj = loads_bounded(line)
    except ValueError:
        return None, "bad"
    if not isinstance(obj, dict):
        return None, "bad"
    sha, kid, mac = obj.pop(CHECK, None), obj.pop(KID, None), obj.pop(MAC, None)
    if sha is None:  # an old line; but one that lost its checksum while keeping a MAC was edited
        return (None, "bad") if kid is not None or mac is not None else (obj, "unverified")
    body = _body(obj)
    if sha != _digest(body):
        return None, "bad"
    if key is None or kid != key[1]:
        return obj, "unsigned"
    return (obj, "ok") if isinstance(mac, str) and hmac.compare_digest(mac, _mac(key[0], body)) else (None, "bad")


@dataclass
class ReadResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0  # damaged lines skipped (their work must be redone)
    unverified: int = 0  # lines without a checksum, used as they are
    unsigned: int = 0  # checksum fine, but not signed by this user's key (another machine's, or stripped)
    bad_cells: dict[str, int] = field(default_factory=dict)  # damaged lines per cell id, where still legible
    bad_lines: list[int] = field(default_factory=list)  # their line numbers (1-based), so a reader can name them


_CELL = re.compile(r'"cell":\s*"((?:[^"\\]|\\.)*)"')


def _cell_of(text: str) -> str | None:
    """The cell id a damaged line names, if it is still legible."""
    found = _CELL.search(text)
    if not found:
        return None
    try:
        return json.loads(f'"{found.group(1)}"')
    except ValueError:
        return None


def read(path: Path | str) -> ReadResult:
    out = ReadResult()
    path = Path(path)
    if not path.exists():
        return out
    key = integrity_key()
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            text = raw.decode("utf-8", errors="replace")
            record, state = decode(text, key) if "\ufffd" not in text or _utf8(raw) else (None, "bad")
            if record is None:
                out.bad += 1
                out.bad_lines.append(number)
                cell = _cell_of(text)
                if cell is not None:
                    out.bad_cells[cell] = out.bad_cells.get(cell, 0) + 1
            else:
                out.records.append(record)
                out.unverified += state == "unverified"
                out.unsigned += state == "unsigned"
    return out


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def append(path: Path | str, records: Iterable[dict[str, Any]]) -> int:
    """Append records under an exclusive lock; all of them or none. Returns the count."""
    from bench.redact import secret_values

    secrets, key = secret_values(), integrity_key(create=True)
    lines = [encode(r, key, secrets) for r in records]
    if not lines:
        return 0
    data = "".join(lines).encode("utf-8")
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise disk_error(exc, path) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, or by the kernel if we die
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # seal a torn line left by a killed writer
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, size)  # roll back our partial write; earlier lines stay as they were
            raise disk_error(exc, path) from exc
    finally:
        os.close(fd)
    return len(lines)

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
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError

CHECK = "_sha"
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


def encode(record: dict[str, Any]) -> str:
    """One checksummed line (with its newline)."""
    record = {k: v for k, v in record.items() if k != CHECK}
    body = _body(record)
    # Round-trip first, so the checksum covers exactly what a reader will re-serialise.
    body = _body(json.loads(body))
    head = f'{{"{CHECK}": "{_digest(body)}"'
    return (head + "}" if body == "{}" else f"{head}, {body[1:]}") + "\n"


def decode(line: str) -> tuple[dict[str, Any] | None, str]:
    """(record, state): state is "ok", "unverified" (no checksum) or "bad"."""
    if not line.endswith("\n"):
        return None, "bad"  # torn: the writer died before the newline
    try:
        obj = json.loads(line)
    except ValueError:
        return None, "bad"
    if not isinstance(obj, dict):
        return None, "bad"
    sha = obj.pop(CHECK, None)
    if sha is None:
        return obj, "unverified"
    return (obj, "ok") if sha == _digest(_body(obj)) else (None, "bad")


@dataclass
class ReadResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0  # damaged lines skipped (their work must be redone)
    unverified: int = 0  # lines without a checksum, used as they are


def read(path: Path | str) -> ReadResult:
    out = ReadResult()
    path = Path(path)
    if not path.exists():
        return out
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                out.bad += 1
                continue
            record, state = decode(text)
            if record is None:
                out.bad += 1
            else:
                out.records.append(record)
                out.unverified += state == "unverified"
    return out


def append(path: Path | str, records: Iterable[dict[str, Any]]) -> int:
    """Append records under an exclusive lock; all of them or none. Returns the count."""
    lines = [encode(r) for r in records]
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

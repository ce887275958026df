"""A run folder: the stored rows every report reads.

Layout of `RUN/`:
- `rows.jsonl`: one JSON object per (cell, test example), fields `ROW_FIELDS`;
- `cells.jsonl`: one JSON object per finished (or failed) cell, fields `CELL_FIELDS`,
  with `info` holding the strategy's facts (loss curve, index type, demo ids...);
- `manifest.json`, `summary.csv`, `summary.md`, `report.html`: written from the above;
- `artifacts/<cell>/`: what `prepare` saved (a LoRA adapter, for example), and an
  unfinished cell's checkpoint (bench/checkpoint.py): `partial.jsonl`, its scored
  rows per chunk, and `prepared.jsonl`, a reference to its prepared artifacts;
- `events.jsonl`: what each process started (prepare, predict chunks), for audits.
Appends go through `bench.jsonl`: checksummed lines under an fcntl lock, all or
nothing, so a crash or a full disk loses at most the records being written, and a
damaged line is detected, counted (`RunStore.damaged`) and its work redone, never
used. Readers dedupe rows by (cell, example_id), the last write winning, so several
processes writing one run folder neither lose nor duplicate rows. Whole files
(manifest, summaries) are written to a temporary file and renamed over the old one.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench import jsonl
from bench.errors import BenchError

ROW_FIELDS = ("cell", "task", "strategy", "model", "seed", "example_id", "input", "target", "output",
              "score", "exact_match", "f1", "latency_s", "prompt_tokens", "completion_tokens",
              "retrieved_ids", "recall_at_k", "truncated", "first_token_s", "retrieval_s")
CELL_FIELDS = ("cell", "task", "strategy", "model", "seed", "status", "error", "metric", "n",
               "prepare_s", "predict_s", "peak_memory_mb", "device", "started_at", "finished_at", "info")


def cell_id(task: str, strategy: str, model: str, seed: int) -> str:
    return f"{task}|{strategy}|{model}|seed{seed}"


def safe_name(text: str) -> str:
    """A file-name-safe form of a cell id or run name (no separators, no dot-dot)."""
    out = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    return out.strip(".") or "_"


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # file -> damaged lines skipped by the last read of it (reported, their work redone)
        self.damaged: dict[str, int] = {}
        self.damaged_lines: dict[str, list[int]] = {}  # full path -> the damaged lines' numbers (1-based)

    @property
    def rows_path(self) -> Path:
        return self.root / "rows.jsonl"

    @property
    def cells_path(self) -> Path:
        return self.root / "cells.jsonl"

    def artifacts_dir(self, cell: str) -> Path:
        base = (self.root / "artifacts").resolve()
        path = base / safe_name(cell)
        if path.resolve().parent != base:  # defence in depth: safe_name already removes separators
            raise BenchError(f"cell name {cell!r} would leave the run folder")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _append(self, path: Path, records: Iterable[dict[str, Any]]) -> None:
        jsonl.append(path, records)

    def append_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        self._append(self.rows_path, rows)

    def append_cell(self, cell: dict[str, Any]) -> None:
        self._append(self.cells_path, [cell])

    def append_event(self, event: str, **fields: Any) -> None:
        self._append(self.root / "events.jsonl", [{"event": event, "pid": os.getpid(), "at": time.time(), **fields}])

    # -- per-cell checkpoints ------------------------------------------------------
    def partial_path(self, cell: str) -> Path:
        return self.artifacts_dir(cell) / "partial.jsonl"

    def append_partial(self, cell: str, rows: Iterable[dict[str, Any]]) -> None:
        self._append(self.partial_path(cell), rows)

    def read_partial(self, cell: str) -> list[dict[str, Any]]:
        return self._read(self.partial_path(cell), f"partial rows of {cell}")

    def clear_partial(self, cell: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial_path(cell))

    def prepared_path(self, cell: str) -> Path:
        return self.artifacts_dir(cell) / "prepared.jsonl"

    def append_prepared(self, cell: str, ref: dict[str, Any]) -> None:
        self._append(self.prepared_path(cell), [ref])

    def read_prepared(self, cell: str) -> list[dict[str, Any]]:
        return self._read(self.prepared_path(cell), f"prepared artifacts of {cell}")

    def clear_prepared(self, cell: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.prepared_path(cell))

    @contextlib.contextmanager
    def claim(self, cell: str) -> Iterator[bool]:
        """Yields False when another live process is running `cell` in this folder."""
        fd = os.open(self.artifacts_dir(cell) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # the kernel drops the lock with the descriptor, or with a killed process

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, ensure_ascii=False, default=jsonl.jsonable))

    def write_text(self, name: str, text: str) -> Path:
        """Write-then-rename, so readers never see half a file: a crash (or a full disk)
        before the rename leaves the old file as it was. Secret values are masked."""
        from bench.redact import redact_text

        text = redact_text(text)
        target = self.root / name
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
        except OSError as exc:
            raise jsonl.disk_error(exc, target) from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise jsonl.disk_error(exc, target) from exc
            raise
        _fsync_dir(self.root)  # the rename itself survives a power cut
        return target

    def _read(self, path: Path, what: str) -> list[dict[str, Any]]:
        result = jsonl.read(path)
        if result.bad:
            self.damaged[path.name if path.parent == self.root else what] = result.bad
            self.damaged_lines[str(path)] = list(result.bad_lines)
        return result.records

    def read_rows(self) -> list[dict[str, Any]]:
        """Verified rows, one per (cell, example_id): the last written wins."""
        return dedupe_rows(self._read(self.rows_path, "rows.jsonl"))

    def read_cells(self) -> list[dict[str, Any]]:
        return self._read(self.cells_path, "cells.jsonl")


def dedupe_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        key = (row.get("cell"), row.get("example_id"))
        by_key.pop(key, None)  # re-insert, so the order is that of the last writes
        by_key[key] = row
    return list(by_key.values())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The verified records of a run file; damaged lines are skipped (see `bench.jsonl`)."""
    return jsonl.read(path).records


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

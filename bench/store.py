"""A run folder: the stored rows every report reads.

Layout of `RUN/`:
- `rows.jsonl`: one JSON object per (cell, test example), fields `ROW_FIELDS`;
- `cells.jsonl`: one JSON object per finished (or failed) cell, fields `CELL_FIELDS`,
  with `info` holding the strategy's facts (loss curve, index type, demo ids...);
- `manifest.json`, `summary.csv`, `summary.md`, `report.html`: written from the above;
- `artifacts/<cell>/`: what `prepare` saved (a LoRA adapter, for example).
Appends are one `write` of whole lines followed by flush and fsync, so a crash loses
at most the line being written, and a torn last line is skipped on reading.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

ROW_FIELDS = ("cell", "task", "strategy", "model", "seed", "example_id", "input", "target", "output",
              "score", "exact_match", "f1", "latency_s", "prompt_tokens", "completion_tokens",
              "retrieved_ids", "recall_at_k", "truncated")
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

    @property
    def rows_path(self) -> Path:
        return self.root / "rows.jsonl"

    @property
    def cells_path(self) -> Path:
        return self.root / "cells.jsonl"

    def artifacts_dir(self, cell: str) -> Path:
        path = self.root / "artifacts" / safe_name(cell)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _append(self, path: Path, records: Iterable[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, ensure_ascii=False, default=_jsonable) + "\n" for r in records)
        if not data:
            return
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def append_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        self._append(self.rows_path, rows)

    def append_cell(self, cell: dict[str, Any]) -> None:
        self._append(self.cells_path, [cell])

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable))

    def write_text(self, name: str, text: str) -> Path:
        """Write-then-rename, so readers never see half a file."""
        target = self.root / name
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return target

    def read_rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.rows_path)

    def read_cells(self) -> list[dict[str, Any]]:
        return read_jsonl(self.cells_path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line from a crash mid-write
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)

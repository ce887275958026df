"""`ResultSink`: the only writer of a run folder (rows, cells, events, checkpoints,
artifacts, manifest), run by the driver whichever executor runs the cells.

Workers send what a cell produces (events, checkpoint chunks, its prepared
artifacts as soon as `prepare` returns, the final `CellResult`); the sink appends
it through `RunStore` (checksummed lines under a lock), and hands an unfinished
cell's checkpoint back on resume (`checkpoint`, bench/checkpoint.py). Several
driver processes may share one folder (`--name` with different `--tasks`): cells
are claimed with a file lock, and the manifest is *merged* under a lock on every
write, never rewritten from one process's view: a section that maps names to facts
(models, tasks, artifacts, cells, executors) keeps the entries of every process,
the grid is the union of every process's cells, and `finished_at` is stamped only
when every cell of that union is finished.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench import jsonl
from bench.store import RunStore

# Manifest sections that map a name to facts: merged entry by entry across processes.
MERGED = ("models", "tasks", "artifacts", "cells", "executors")
_GRID_KEYS = ("tasks", "strategies", "models", "seeds")


class ResultSink:
    def __init__(self, run_dir: str | Path, log=None) -> None:
        self.store = RunStore(run_dir)
        self.root = self.store.root
        self.log = log or (lambda *a, **k: None)

    # -- what is already there ---------------------------------------------------------
    def done_cells(self) -> set[str]:
        """Cells recorded ok whose rows are all stored and intact (a damaged row makes
        its cell run again, for the missing examples only)."""
        counts: dict[str, int] = {}
        for row in self.store.read_rows():
            counts[row.get("cell")] = counts.get(row.get("cell"), 0) + 1
        return {c["cell"] for c in self.store.read_cells()
                if c.get("status") == "ok" and counts.get(c["cell"], 0) >= (c.get("n") or 0)}

    def recorded_cells(self) -> set[str]:
        """Cells with a final record: ok with all rows, or failed."""
        failed = {c["cell"] for c in self.store.read_cells() if c.get("status") == "failed"}
        return self.done_cells() | failed

    def checkpoint(self, cell: str):
        """What the folder holds of an unfinished cell (bench/checkpoint.py): its rows in
        rows.jsonl and partial.jsonl, and the last verified reference to its prepared
        artifacts. Each damaged line is reported by file and line, and never used."""
        from bench.checkpoint import FOLDER, Checkpoint

        rows = [r for r in self.store.read_rows() if r.get("cell") == cell] + self.store.read_partial(cell)
        refs = [r for r in self.store.read_prepared(cell) if r.get("cell") == cell]
        notes = []
        for path, redo in ((self.store.partial_path(cell), "their examples are predicted again"),
                           (self.store.prepared_path(cell), "the cell prepares again unless an intact line remains")):
            lines = self.store.damaged_lines.pop(str(path), [])  # reported once per read
            if lines:
                notes.append(f"{path} line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))}: damaged "
                             f"checkpoint (torn by a kill, or altered), skipped; {redo}")
                self.log(f"[yellow]{notes[-1]}[/]")
        ref = refs[-1] if refs else None
        # The folder is always the cell's own: a line cannot point a worker elsewhere.
        folder = str(self.artifacts_dir(cell) / FOLDER) if ref is not None and ref.get("folder") == FOLDER else None
        return Checkpoint(rows=rows, prepared=ref, folder=folder, notes=notes)

    @contextlib.contextmanager
    def claim(self, cell: str) -> Iterator[bool]:
        with self.store.claim(cell) as mine:
            yield mine

    def artifacts_dir(self, cell: str) -> Path:
        return self.store.artifacts_dir(cell)

    # -- the channel workers write through ----------------------------------------------
    def event(self, name: str, **fields: Any) -> None:
        pid = fields.pop("pid", os.getpid())  # the worker's process, which may be another machine's
        self.store._append(self.root / "events.jsonl", [{"event": name, "pid": pid, "at": time.time(), **fields}])

    def chunk(self, cell: str, rows: list[dict]) -> None:
        self.store.append_partial(cell, rows)

    def prepared(self, cell: str, ref: dict, folder: str | Path | None = None,
                 files: dict[str, bytes] | None = None) -> None:
        """A cell's prepare checkpoint: its artifacts into RUN/artifacts/<cell>/prepared/
        (copied from `folder`, a worker's or a shared path, or written from `files`
        sent by a remote worker), then the line naming them. The line comes last and
        only for a whole copy, so it never names half a folder."""
        from bench import prepared
        from bench.checkpoint import FOLDER

        ref = dict(ref)
        target = self.artifacts_dir(cell) / FOLDER
        if ref.get("sha256"):
            placed = True
            if files is not None:
                shutil.rmtree(target, ignore_errors=True)
                for rel, data in files.items():
                    path = (target / rel).resolve()
                    if target.resolve() not in path.parents:
                        continue  # a name that would leave the folder is dropped (and the check below fails)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
            elif folder is not None and Path(folder).resolve() != target.resolve():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(folder, target)
            else:
                placed = False  # the worker saved them here itself (this machine's run folder)
            problems = prepared.problems(target, dict(ref["sha256"])) if placed else []
            if problems:
                self.log(f"[yellow]{cell}: its prepared artifacts arrived damaged ({'; '.join(problems[:3])}); "
                         "not checkpointed[/]")
                return
        self.store.append_prepared(cell, ref)

    # -- a finished cell -----------------------------------------------------------------
    def record(self, result, spec=None) -> None:
        """Rows, then the cell record (its secrets masked), then its artifacts in the
        manifest; the checkpoint goes last, once the rows are safe."""
        from bench.redact import redact

        record = dict(result.record)
        if result.ok:
            record = self._place_artifacts(result, record)
            # Rows resumed from rows.jsonl itself are there already: never written twice.
            there = {(r.get("example_id"), r.get("pred_digest")) for r in self.store.read_rows()
                     if r.get("cell") == result.cell}
            self.store.append_rows([r for r in result.rows if (r.get("example_id"), r.get("pred_digest")) not in there])
        self.store.append_cell(redact(record))  # an error message may echo a token
        if result.ok:
            self.store.clear_partial(result.cell)
            self.store.clear_prepared(result.cell)  # prepared/ stays: the cell's artifacts
        info = record.get("info") or {}
        hashes = {k: v for k, v in info.items() if k.endswith("_sha256") and isinstance(v, str)}
        paths = {k: v for k, v in info.items() if k.endswith("_path") and isinstance(v, str)}
        entry = {"status": record.get("status"), "hardware": record.get("hardware"),
                 "executor": record.get("executor"), "attempts": record.get("attempts", 1)}
        if spec is not None:
            entry["resources"] = dict(spec.resources)
        sections: dict[str, Any] = {"cells": {result.cell: entry}}
        if hashes or paths:  # the index or adapter a cell used, and where it lies
            sections["artifacts"] = {result.cell: {**hashes, **paths}}
        self.update_manifest(sections)

    def _place_artifacts(self, result, record: dict) -> dict:
        """Artifacts into RUN/artifacts/<cell>/ when the worker left them elsewhere;
        the record's paths then point into the run folder."""
        target = self.artifacts_dir(result.cell)
        source = result.artifact_dir
        if source is None or result.in_place or Path(source).resolve() == target.resolve():
            return record  # already in the run folder, or on a shared path the manifest names
        if result.files is not None:
            for rel, data in result.files.items():
                path = (target / rel).resolve()
                if target.resolve() not in path.parents:
                    continue  # a name that would leave the folder is dropped, never followed
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        elif Path(source).is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        info = {k: (str(target / Path(v).relative_to(source)) if isinstance(v, str) and k.endswith("_path")
                    and _inside(v, source) else v) for k, v in (record.get("info") or {}).items()}
        return {**record, "info": info}

    # -- the manifest --------------------------------------------------------------------
    @contextlib.contextmanager
    def _manifest_lock(self) -> Iterator[None]:
        fd = os.open(self.root / ".manifest.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read_manifest(self) -> dict[str, Any]:
        path = self.root / "manifest.json"
        try:
            data = jsonl.loads_bounded(path.read_text(encoding="utf-8")) if path.exists() else {}  # untrusted: bounded
        except (OSError, ValueError):
            return {}  # damaged: rebuilt from this run
        return data if isinstance(data, dict) else {}

    def open_manifest(self, manifest: dict[str, Any], grid: Iterable[str]) -> dict[str, Any]:
        """This process's manifest merged into the folder's; the run is unfinished again."""
        return self.update_manifest(manifest, grid=grid, finished=False)

    def update_manifest(self, sections: dict[str, Any], grid: Iterable[str] = (),
                        finished: bool | None = None) -> dict[str, Any]:
        with self._manifest_lock():
            merged = merge_manifest(self.read_manifest(), sections, list(grid))
            if finished is False:
                merged.pop("finished_at", None)
            elif finished:
                from bench.execute import now

                merged["finished_at"] = now()
            self.store.write_json("manifest.json", merged)
        return merged

    def finish(self, grid: Iterable[str]) -> list[str]:
        """This process's unfinished cells (none: its grid is done). `finished_at` is
        stamped when every cell that any process planned in this folder is finished."""
        recorded = self.recorded_cells()
        mine = [c for c in grid if c not in recorded]
        with self._manifest_lock():
            manifest = self.read_manifest()
            everyone = manifest.get("grid") or []
            if not mine and all(c in recorded for c in everyone):
                from bench.execute import now

                manifest["finished_at"] = now()
            else:
                manifest.pop("finished_at", None)
            self.store.write_json("manifest.json", manifest)
        return mine


def _inside(path: str, folder: str) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def merge_manifest(disk: dict[str, Any], mine: dict[str, Any], grid: list[str]) -> dict[str, Any]:
    """`mine` over `disk`, keeping every entry of the name -> facts sections, the
    earliest `created_at`, and the union of the grids. Two processes whose configs
    differ only in what the grid spans record the union, so `--resume` covers both."""
    out = {**disk, **mine}
    for key in MERGED:
        if isinstance(disk.get(key), dict) or isinstance(mine.get(key), dict):
            out[key] = {**(disk.get(key) or {}), **(mine.get(key) or {})}
    if disk.get("created_at"):
        out["created_at"] = disk["created_at"]
    out["grid"] = list(dict.fromkeys([*(disk.get("grid") or []), *grid]))
    old, new = disk.get("config"), mine.get("config")
    if isinstance(old, dict) and isinstance(new, dict) and \
            {k: v for k, v in old.items() if k not in _GRID_KEYS} == {k: v for k, v in new.items() if k not in _GRID_KEYS}:
        out["config"] = {**new, **{k: _union(old.get(k), new.get(k)) for k in _GRID_KEYS}}
    return out


def _union(a: Any, b: Any) -> list:
    seen, out = set(), []
    for item in [*(a or []), *(b or [])]:
        key = json.dumps(item, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out

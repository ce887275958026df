"""The content-addressed cache of expensive artifacts, under `bench.paths.cache_root()`.

Kinds (one folder each): `models/` (GGUF converted to safetensors), `indexes/` (FAISS
indexes with their chunk maps), `prepared/` (trained adapters and checkpoints with the
facts of their training, bench/prepared.py), `predictions/` (one checksummed JSONL file per prediction context,
one line per example).

Rules:
- A key is the sha256 of the canonical JSON of *everything* that affects the result
  (`content_key`), including a hash of the source code that makes it (`code_version`),
  so a change to any input misses instead of serving stale work.
- Entries are written to a temporary name and renamed: a reader sees a whole entry or
  none. Failed or empty outputs, and anything of a failed cell, are never written.
- A hit touches the entry, so `prune --older-than` removes what was not used lately.
- What is served from a cache keeps the timings measured when it was computed; the
  time of a cache hit is never reported as latency or training time.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench import jsonl
from bench.paths import cache_dir, cache_root

KINDS = ("models", "indexes", "prepared", "predictions")


def content_key(parts: Mapping[str, Any], length: int = 24) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


@functools.lru_cache(maxsize=None)
def code_version(*modules: str) -> str:
    """A hash of the named modules' source files: an edit to the code that makes an
    artifact invalidates it (no hand-bumped version numbers to forget)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        origin = getattr(spec, "origin", None)
        h.update(name.encode())
        if origin and os.path.isfile(origin):
            h.update(Path(origin).read_bytes())
    return h.hexdigest()[:16]


def touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


# -- predictions ------------------------------------------------------------------
def _prediction_fields() -> tuple[str, ...]:
    from strategies.base import Prediction

    return tuple(f.name for f in dataclasses.fields(Prediction))


class PredictionCache:
    """The predictions of one context (model, task data, strategy config, generation
    settings, seed, code), one line per example id."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.path = cache_dir("predictions") / f"{key}.jsonl"
        self.damaged = 0
        self._read: dict[str, dict[str, Any]] | None = None

    def get(self) -> dict[str, dict[str, Any]]:
        """example id -> stored prediction (with `wall_s`, its share of the original pass);
        read once per instance (a cell asks before its warm-up and again to predict)."""
        if self._read is None:
            self._read = {}
            if self.path.exists():
                result = jsonl.read(self.path)
                self.damaged = result.bad
                touch(self.path)
                self._read = {r["example_id"]: r for r in result.records if r.get("output")}
        return self._read

    def put(self, rows: Iterable[Mapping[str, Any]]) -> int:
        keep = _prediction_fields() + ("wall_s",)
        records = [{k: r.get(k) for k in keep if k in r} for r in rows
                   if isinstance(r.get("output"), str) and r["output"].strip() and not r.get("cached")]
        return jsonl.append(self.path, records) if records else 0


def prediction_from(record: Mapping[str, Any]):
    """A `Prediction` from a stored record (fields added since are left at their defaults)."""
    from strategies.base import Prediction

    names = set(_prediction_fields())
    values = {k: v for k, v in record.items() if k in names}
    values["retrieved_ids"] = tuple(values.get("retrieved_ids") or ())
    return Prediction(**values)


# -- listing and pruning ------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    kind: str
    path: Path
    bytes: int
    last_used: float  # mtime: set on write and on every hit


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def entries(kinds: Iterable[str] = KINDS) -> list[Entry]:
    out = []
    for kind in kinds:
        folder = cache_root() / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if ".tmp" in path.name:  # an unfinished write; prune removes it
                continue
            out.append(Entry(kind, path, _size(path), path.stat().st_mtime))
    return out


def prune(older_than_days: float | None = None, everything: bool = False,
          kinds: Iterable[str] = KINDS) -> tuple[int, int]:
    """Remove entries not used for `older_than_days` (or all with `everything`), plus
    leftovers of interrupted writes. Returns (entries removed, bytes freed)."""
    if older_than_days is None and not everything:
        raise ValueError("say what to prune: older_than_days or everything")
    cutoff = time.time() - (older_than_days or 0) * 86400
    removed = freed = 0
    for kind in kinds:
        folder = cache_root() / kind
        if not folder.is_dir():
            continue
        for path in list(folder.iterdir()):
            stale_tmp = ".tmp" in path.name and path.stat().st_mtime < time.time() - 3600
            if everything or stale_tmp or path.stat().st_mtime < cutoff:
                size = _size(path)
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed, freed = removed + 1, freed + size
    return removed, freed

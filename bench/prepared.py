"""Cached `prepare` results (trained adapters, fine-tuned checkpoints), reused instead
of training again: one cache for every strategy whose `StrategyDef` declares
`artifacts`; the others prepare cheaply.

An entry is a folder `prepared/<key>/` holding `data/` (what the strategy's
`artifacts.save` wrote: safetensors and JSON only) and `meta.json` (the cell's facts,
the original prepare seconds, the strategy's own facts for `artifacts.load`, and the
sha256 of every file under `data/`). The key covers the strategy's full config, the
base model fingerprint (weights, tokenizer, chat template), the task data hash, the
seed, the train limit, the device and a hash of the code that shapes the artifacts
(the def's `code` modules plus the backend's module), so an edit to any of them misses.
Restoring checks every file's sha256 and refuses pickle files (`.bin`, `.pt`, `.pth`,
`.pkl`, `.ckpt`): loading them runs code.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.cache import code_version, content_key, touch
from bench.errors import BenchError
from bench.paths import cache_dir

KIND = "prepared"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def refuse_pickles(folder: Path, what: str) -> None:
    found = sorted(p.name for p in Path(folder).rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise BenchError(f"{what} {folder} holds pickle files ({', '.join(found)}); loading them could run "
                         "arbitrary code, so the bench reads safetensors only")


def prepare_key(definition, config: dict[str, Any], model_fingerprint: str, task_fingerprint: str,
                seed: int, train_limit: int | None, device: str, backend_code: tuple[str, ...] = ()) -> str | None:
    """The content key of a strategy's prepared artifacts; None when it declares none.
    `backend_code`: the backend's own modules (bench/cells.py `_backend_code`)."""
    if definition.artifacts is None:
        return None
    return context_key(definition, config, model_fingerprint, task_fingerprint, seed, train_limit, device,
                       backend_code)


def context_key(definition, config: dict[str, Any], model_fingerprint: str, task_fingerprint: str,
                seed: int, train_limit: int | None, device: str, backend_code: tuple[str, ...] = ()) -> str:
    """What `prepare_key` hashes, for every strategy: a run folder's prepare checkpoint
    (bench/checkpoint.py) is trusted only under the same key."""
    modules = (*definition.code, *backend_code)
    return content_key({"kind": "prepare", "strategy": definition.name, "config": config,
                        "model": model_fingerprint, "task": task_fingerprint, "seed": seed,
                        "train_limit": train_limit, "device": device, "code": code_version(*modules)})


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def problems(folder: Path, recorded: dict[str, str]) -> list[str]:
    """How `folder` differs from the sha256 `recorded` for it (missing, extra, changed
    or pickle files); empty when it is whole."""
    folder = Path(folder)
    found = _hashes(folder) if folder.is_dir() else {}
    out = [f"{name} is missing" for name in sorted(set(recorded) - set(found))]
    out += [f"{name} was not written by prepare" for name in sorted(set(found) - set(recorded))]
    out += [f"{name} changed (sha256 differs)" for name in sorted(set(found) & set(recorded))
            if found[name] != recorded[name]]
    out += [f"{name} is a pickle file" for name in sorted(found) if Path(name).suffix.lower() in PICKLE_SUFFIXES]
    return out


def write(definition, artifacts, folder: Path) -> dict[str, Any]:
    """The strategy's own `save` into `folder` (made empty first); returns the facts
    `artifacts.load` needs and the sha256 of every file written."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        facts = definition.artifacts.save(artifacts, folder)
        refuse_pickles(folder, f"{definition.name} artifacts")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # never half a folder that looks saved
        raise
    return {"facts": facts, "sha256": _hashes(folder)}


def save(key: str, definition, artifacts, prepare_s: float, written: tuple[Path, dict] | None = None) -> Path | None:
    """Store freshly prepared artifacts through the strategy's own `save`, or copy
    `written` (a folder `write` filled, and what it returned) instead of saving twice."""
    if definition.artifacts is None:
        return None
    target = cache_dir(KIND) / key
    tmp = target.with_name(f"{key}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if written is not None:
            shutil.copytree(written[0], tmp / "data")
            facts = written[1]["facts"]
        else:
            facts = write(definition, artifacts, tmp / "data")["facts"]
        meta = {"info": dict(artifacts.info), "prepare_s": prepare_s, "strategy": artifacts.strategy,
                "facts": facts, "sha256": _hashes(tmp / "data")}
        (tmp / "meta.json").write_text(json.dumps(meta, default=str))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # a reader sees the old entry, no entry, or the whole new one
    return target


def evict(key: str) -> None:
    shutil.rmtree(cache_dir(KIND) / key, ignore_errors=True)


def load(key: str, definition, task, handle, workdir: Path | None):
    """(Artifacts, original prepare seconds, {"facts", "sha256"}) from the cache, or None
    on a miss. A damaged entry (bad JSON, a missing, extra or changed file) is removed
    and counts as a miss."""
    folder = cache_dir(KIND) / key
    if not (folder / "meta.json").is_file():
        return None
    refuse_pickles(folder, "cached artifacts")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        info, recorded = dict(meta["info"]), dict(meta["sha256"])
        ok = bool(recorded) and _hashes(folder / "data") == recorded
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok or definition.artifacts is None:
        evict(key)
        return None
    artifacts = definition.artifacts.load(folder / "data", task, handle, meta.get("facts") or {})
    if workdir is not None:  # the run folder keeps its own copy, as after preparing
        dest = Path(workdir) / "prepared"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(folder / "data", dest)
        info["saved_path"] = str(dest)
    touch(folder)
    written = {"facts": meta.get("facts") or {}, "sha256": recorded}
    return replace(artifacts, info={**artifacts.info, **info}), float(meta["prepare_s"]), written

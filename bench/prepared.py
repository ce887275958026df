"""Cached `prepare` results: trained LoRA adapters, reused instead of training again.

An entry is a folder `adapters/<key>/` holding `adapter/` (safetensors only) and
`meta.json` (the cell's training facts and the original prepare seconds). The key
covers the base model fingerprint (weights, tokenizer, chat template), the task data
hash, the strategy's full config, the seed, the train limit and the code that trains.
Restoring checks the adapter file's sha256 against the one recorded at training, and
refuses pickle files (`.bin`, `.pt`, `.pth`, `.pkl`, `.ckpt`): loading them runs code.
Only strategies listed in `SUPPORTED` are cached; the others prepare cheaply or keep
their own cache (RAG's indexes).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from bench.cache import code_version, content_key, touch
from bench.errors import BenchError
from bench.paths import cache_dir

SUPPORTED = {"lora": ("strategies.lora", "strategies.lora_data", "strategies.prompts", "bench.backends.hf")}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ADAPTER_FILE = "adapter_model.safetensors"


def refuse_pickles(folder: Path, what: str) -> None:
    found = sorted(p.name for p in Path(folder).rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise BenchError(f"{what} {folder} holds pickle files ({', '.join(found)}); loading them could run "
                         "arbitrary code, so the bench reads safetensors only")


def prepare_key(strategy_name: str, config: dict[str, Any], model_fingerprint: str, task_fingerprint: str,
                seed: int, train_limit: int | None, device: str) -> str | None:
    modules = SUPPORTED.get(strategy_name)
    if modules is None:
        return None
    return content_key({"kind": "prepare", "strategy": strategy_name, "config": config,
                        "model": model_fingerprint, "task": task_fingerprint, "seed": seed,
                        "train_limit": train_limit, "device": device, "code": code_version(*modules)})


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(key: str, artifacts, prepare_s: float) -> Path | None:
    """Store a freshly trained adapter; nothing when the strategy saved none."""
    src = artifacts.info.get("adapter_path")
    if not src or not (Path(src) / ADAPTER_FILE).is_file():
        return None
    target = cache_dir("adapters") / key
    tmp = target.with_name(f"{key}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp / "adapter")
    meta = {"info": dict(artifacts.info), "prepare_s": prepare_s, "strategy": artifacts.strategy}
    (tmp / "meta.json").write_text(json.dumps(meta, default=str))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # a reader sees the old entry, no entry, or the whole new one
    return target


def evict(key: str) -> None:
    shutil.rmtree(cache_dir("adapters") / key, ignore_errors=True)


def load(key: str, task, handle, workdir: Path | None):
    """(Artifacts, original prepare seconds) from the cache, or None on a miss. A
    damaged entry (bad JSON, wrong checksum) is removed and counts as a miss."""
    from strategies.base import Artifacts
    from strategies.lora import attach_adapter

    folder = cache_dir("adapters") / key
    if not (folder / "meta.json").is_file():
        return None
    refuse_pickles(folder, "cached adapter")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        info = dict(meta["info"])
        ok = _sha(folder / "adapter" / ADAPTER_FILE) == info.get("adapter_sha256")
    except (OSError, ValueError, KeyError):
        ok = False
    if not ok:
        evict(key)
        return None
    adapted = attach_adapter(handle, folder / "adapter")
    if workdir is not None:  # the run folder keeps its own copy, as after training
        dest = Path(workdir) / "adapter"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(folder / "adapter", dest)
        info["adapter_path"] = str(dest)
    touch(folder)
    return Artifacts(meta.get("strategy", "lora"), handle, task, state={"model": adapted}, info=info), \
        float(meta["prepare_s"])

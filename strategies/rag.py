"""Retrieval-augmented generation: embed, index with FAISS, put what is retrieved in the prompt.

Two modes, chosen by the task:
- corpus (the task has documents): every document is cut into overlapping windows of
  the *embedder's* tokens (so a chunk is never truncated by the embedder), and each
  query gets the top_k most similar **distinct documents**, each as its best chunk,
  best first. More chunks than top_k are fetched and deduplicated because adjacent,
  overlapping chunks of one document would otherwise fill the context with near
  duplicates and make recall@k count one document twice. `retrieved_ids` are doc ids.
- dynamic-few-shot (no corpus): the train inputs are indexed and each query gets its
  demos_k nearest train examples as demonstrations, the most similar last (nearest
  the query). `retrieved_ids` are train example ids.

`retriever` chooses how candidates are ranked: `dense` (FAISS over embeddings),
`bm25` (lexical, bm25s) or `hybrid` (both, fused by reciprocal rank). Each cell's rows
carry recall@k of the one it used; with `compare_retrievers: true` the facts also hold
recall@top_k of all three on the validation split (`val_recall_at_k_<retriever>`).

Vectors are L2-normalised, so the inner-product indexes rank by cosine. The built
index and its chunk map are cached on disk by content (see `_cache_key`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bench.embedder import fingerprint_of, load_embedder
from bench.errors import BenchError
from bench.options import config_from
from bench.paths import cache_dir
from bench.progress import phase
from strategies.base import Artifacts, Budget, Prediction, StrategyDef
from strategies.chunking import chunk_documents, passage
from strategies.index_update import update_index
from strategies.lexical import bm25_index, bm25_search, fuse
from strategies.prompts import build_prompt, labelled_subset, pick_demos, predict_prompts, reserve_tokens, user_message

INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")
RETRIEVERS = ("dense", "bm25", "hybrid")
_SPECIAL_TOKENS = 2  # [CLS] and [SEP] that the embedder adds around a chunk


@dataclass(frozen=True)
class RagConfig:
    top_k: int = 3
    chunk_tokens: int = 180
    chunk_overlap: int = 30
    embedder: str = "minilm-l6-v2"
    index: str = "auto"  # auto: flat up to flat_max vectors, HNSW above
    flat_max: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    ivf_nlist: int | None = None  # None: about 4 * sqrt(vectors)
    nprobe: int = 16
    batch_size: int = 8  # generation batch
    embed_batch_size: int = 64
    demos_k: int = 4  # tasks without a corpus: nearest train examples as demonstrations
    # Tasks with a corpus: seeded train examples shown with a passage and their short
    # answer, which teaches small models to answer from the context, not to chat.
    shots: int = 2
    max_train_examples: int | None = None  # cap on the dynamic few-shot pool
    cache: bool = True
    # dense: FAISS over embeddings; bm25: lexical (bm25s); hybrid: both, fused by reciprocal rank.
    retriever: str = "dense"
    rrf_k: int = 60  # reciprocal rank fusion: score = sum of 1 / (rrf_k + rank) over the retrievers
    # Also measure recall@top_k of all three retrievers on the validation split (corpus tasks).
    compare_retrievers: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.shots, int) or self.shots < 0:
            raise BenchError(f"rag.shots must be an integer >= 0, got {self.shots!r}")
        for name in ("top_k", "chunk_tokens", "flat_max", "hnsw_m", "ef_construction", "ef_search",
                     "nprobe", "batch_size", "embed_batch_size", "demos_k", "ivf_nlist", "max_train_examples"):
            value = getattr(self, name)
            if value is None and name in ("ivf_nlist", "max_train_examples"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BenchError(f"rag.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.chunk_overlap, int) or not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise BenchError(f"rag.chunk_overlap must be >= 0 and < chunk_tokens ({self.chunk_tokens}), "
                             f"got {self.chunk_overlap!r}")
        index = str(self.index).lower()
        if index not in INDEX_KINDS:
            raise BenchError(f"rag.index must be one of {', '.join(INDEX_KINDS)}, got {self.index!r}")
        object.__setattr__(self, "index", index)
        if self.retriever not in RETRIEVERS:
            raise BenchError(f"rag.retriever must be one of {', '.join(RETRIEVERS)}, got {self.retriever!r}")
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, int) or self.rrf_k < 1:
            raise BenchError(f"rag.rrf_k must be an integer >= 1, got {self.rrf_k!r}")
        if not isinstance(self.embedder, str) or not self.embedder.strip():
            raise BenchError("rag.embedder must name an embedder (an alias, folder or model id)")


# -- indexes --------------------------------------------------------------------
def build_index(vectors: np.ndarray, config: RagConfig) -> tuple[Any, str]:
    import faiss

    n, dim = vectors.shape
    kind = config.index if config.index != "auto" else ("flat" if n <= config.flat_max else "hnsw")
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
    else:
        # k-means needs at least one point per list; faiss warns below ~39 per list.
        nlist = max(1, min(config.ivf_nlist or int(4 * np.sqrt(n)), n // 39 or 1))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    index.add(vectors)
    return index, kind


def _tune(index: Any, config: RagConfig, fetch: int) -> None:
    """Search-time knobs: not part of the cache key, set after building or loading."""
    import faiss

    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(config.ef_search, fetch)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(config.nprobe, ivf.nlist)


# -- hybrid search -----------------------------------------------------------------
def search(st: Mapping[str, Any], cfg: RagConfig, queries: Sequence[str], fetch: int,
           retriever: str | None = None) -> list[list[int]]:
    """Chunk rows best first for each query, by the configured (or given) retriever."""
    retriever = retriever or cfg.retriever
    dense = lexical = None
    if retriever in ("dense", "hybrid"):
        vectors = st["embedder"].encode(list(queries), batch_size=cfg.embed_batch_size)
        _tune(st["index"], cfg, fetch)
        _, rows = st["index"].search(np.ascontiguousarray(vectors, dtype=np.float32), fetch)
        dense = [[int(r) for r in row if r >= 0] for row in rows]
    if retriever in ("bm25", "hybrid"):
        lexical = bm25_search(st["bm25"], len(st["texts"]), queries, fetch)
    if retriever == "dense":
        return dense
    if retriever == "bm25":
        return lexical
    return [fuse([d, b], cfg.rrf_k)[:fetch] for d, b in zip(dense, lexical)]


def distinct_documents(st: Mapping[str, Any], hits: Sequence[int], k: int) -> dict[str, int]:
    """doc id -> its best chunk row, for the first k distinct documents among the hits."""
    best: dict[str, int] = {}
    for r in hits:
        if len(best) < k:
            best.setdefault(st["ids"][r], r)
    return best


def fetch_size(st: Mapping[str, Any], k: int) -> int:
    # Chunks of one document crowd each other; fetch extra to find k distinct documents.
    return min(st["index"].ntotal, k * 5 + 10 if st["mode"] == "corpus" else k)


def retrieval_prompts(st: Mapping[str, Any], cfg: RagConfig, task, model, examples,
                      exclude_self: bool = False) -> tuple[list[str], list[tuple[str, ...]], float]:
    """The prompts `rag` answers with (passages or nearest demonstrations), the ids
    retrieved for each, and the retrieval seconds per query. `exclude_self` leaves an
    example out of its own demonstrations (training on train examples)."""
    corpus = st["mode"] == "corpus"
    k = cfg.top_k if corpus else cfg.demos_k
    t0 = time.perf_counter()
    rows = search(st, cfg, [ex.input for ex in examples], fetch_size(st, k + int(exclude_self)))
    share = (time.perf_counter() - t0) / max(len(examples), 1)  # one batched call, shared per query
    prompts, retrieved = [], []
    for ex, hits in zip(examples, rows):
        if corpus:
            best = distinct_documents(st, hits, k)
            passages = [st["texts"][r] for r in best.values()]
            prompts.append(build_prompt(model, task, ex.input, passages=passages, reserve=reserve_tokens(task),
                                        shots=st.get("shots", ())))
            retrieved.append(tuple(best))
        else:
            pool = [st["examples"][r] for r in hits if not (exclude_self and st["examples"][r].id == ex.id)]
            demos = list(reversed(pool[:k]))  # most similar last
            prompts.append(build_prompt(model, task, ex.input, demos, reserve=reserve_tokens(task)))
            retrieved.append(tuple(d.id for d in reversed(demos)))
    return prompts, retrieved, share


def recall_by_retriever(st: Mapping[str, Any], cfg: RagConfig, examples) -> dict[str, float]:
    """recall@top_k of every retriever on examples with gold documents (validation):
    the share whose gold document is among the top_k distinct documents retrieved."""
    gold = [(ex, set(ex.meta.get("doc_ids") or ())) for ex in examples]
    gold = [(ex, g) for ex, g in gold if g]
    if st["mode"] != "corpus" or not gold:
        return {}
    out = {}
    for retriever in RETRIEVERS:
        rows = search(st, cfg, [ex.input for ex, _ in gold], fetch_size(st, cfg.top_k), retriever)
        hits = [bool(g & set(distinct_documents(st, row, cfg.top_k))) for (_, g), row in zip(gold, rows)]
        out[retriever] = round(sum(hits) / len(hits), 4)
    return out


def _cache_key(mode: str, content: str, embedder: Any, config: RagConfig) -> str:
    from bench.cache import code_version

    # The code hash replaces a hand-bumped format number: editing chunking or the file layout misses.
    parts = {"code": code_version(*STRATEGY.code), "mode": mode, "content": content, "embedder": fingerprint_of(embedder),
             "index": [config.index, config.flat_max, config.hnsw_m, config.ef_construction, config.ivf_nlist]}
    if mode == "corpus":
        parts["chunks"] = [config.chunk_tokens, config.chunk_overlap]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _save(path: Path, index: Any, meta: dict) -> None:
    import faiss

    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:  # one file, so index and chunk map can never disagree
        np.savez(fh, index=faiss.serialize_index(index),
                 meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    os.replace(tmp, path)  # atomic: readers see the old file or the whole new one


def _index_sha256(index: Any) -> str:
    """What was searched, for the manifest: the serialised index's bytes."""
    import faiss

    return hashlib.sha256(faiss.serialize_index(index).tobytes()).hexdigest()


def _load(path: Path) -> tuple[Any, dict] | None:
    import faiss

    try:
        with np.load(path, allow_pickle=False) as data:
            return faiss.deserialize_index(data["index"]), json.loads(data["meta"].tobytes())
    except (OSError, ValueError, KeyError, RuntimeError):
        return None  # missing or damaged: rebuild


# -- the strategy ---------------------------------------------------------------
class RagStrategy:
    name = "rag"

    def __init__(self, config: RagConfig | None = None, embedder: Any = None) -> None:
        self.config = config or RagConfig()
        self.embedder = embedder  # injected by tests; otherwise loaded (memoised) in prepare

    def _embedder(self, model: Any) -> Any:
        if self.embedder is not None:
            return self.embedder
        return load_embedder(self.config.embedder, "cuda" if str(model.device).startswith("cuda") else "cpu")

    def prepare(self, task, model, budget: Budget) -> Artifacts:
        cfg, t0 = self.config, time.perf_counter()
        embedder = self._embedder(model)
        limit = getattr(embedder, "max_tokens", None)
        if task.corpus and limit and cfg.chunk_tokens + _SPECIAL_TOKENS > limit:
            raise BenchError(f"rag.chunk_tokens={cfg.chunk_tokens} does not fit the embedder "
                             f"{getattr(embedder, 'name', '')!r} (max {limit} tokens with 2 special ones)")
        if task.corpus:
            mode, items, pool = "corpus", task.corpus, None
            content = [[d.id, d.title, d.text] for d in items]
        else:
            caps = [c for c in (cfg.max_train_examples, budget.max_train_examples) if c is not None]
            # As LoRA takes its subset: one seeded order, so a smaller cap is a prefix of a larger.
            mode, pool = "dynamic-few-shot", labelled_subset(task.train, min(caps, default=None), budget.seed)
            if not pool:
                raise BenchError(f"rag: task {task.name!r} has neither a corpus nor train examples to retrieve")
            content = [[ex.id, ex.input] for ex in pool]
        digest = hashlib.sha256(json.dumps(content).encode()).hexdigest()
        path = cache_dir("indexes") / f"{_cache_key(mode, digest, embedder, cfg)}.npz"
        use_cache = cfg.cache and budget.cache
        loaded = _load(path) if use_cache and path.exists() else None
        if loaded is None:
            if mode == "corpus":
                chunks = chunk_documents(items, getattr(embedder, "tokenizer", None), cfg.chunk_tokens,
                                         cfg.chunk_overlap)
                titles = {d.id: d.title for d in items}
                meta = {"texts": [passage(titles[c.doc_id], c.text) for c in chunks],
                        "ids": [c.doc_id for c in chunks], "n_documents": len(items)}
            else:
                meta = {"texts": [ex.input for ex in pool], "ids": [ex.id for ex in pool], "n_documents": len(pool)}
            if not meta["texts"]:
                raise BenchError(f"rag: the corpus of task {task.name!r} has no text to index")
            vectors = self._embed(embedder, meta["texts"], budget.progress, mode)
            index, meta["index"] = build_index(vectors, cfg)
            if use_cache:
                _save(path, index, meta)
        else:
            index, meta = loaded
        by_id = {ex.id: ex for ex in pool or ()}
        state = {"index": index, "texts": meta["texts"], "ids": meta["ids"], "embedder": embedder,
                 "mode": mode, "examples": [by_id.get(i) for i in meta["ids"]] if pool else []}
        if cfg.retriever != "dense" or (cfg.compare_retrievers and mode == "corpus"):
            state["bm25"] = bm25_index(meta["texts"])
        info = {"mode": mode, "index": meta["index"], "n_documents": meta["n_documents"],
                "n_chunks": len(meta["ids"]), "dim": int(index.d), "embedder": getattr(embedder, "name", ""),
                "build_s": round(time.perf_counter() - t0, 4), "cached": loaded is not None,
                "k": cfg.top_k if mode == "corpus" else cfg.demos_k, "cache_key": path.stem,
                "index_sha256": _index_sha256(index), "retriever": cfg.retriever}
        if mode == "corpus":
            train = labelled_subset(task.train, budget.max_train_examples, budget.seed)
            state["shots"] = self._context_shots(task, train, state, budget.seed)
            info.update(chunk_tokens=cfg.chunk_tokens, chunk_overlap=cfg.chunk_overlap,
                        shots=len(state["shots"]))
            val = list(task.validation)[:64] if cfg.compare_retrievers else []
            info.update({f"val_recall_at_k_{name}": value for name, value in recall_by_retriever(state, cfg, val).items()})
        return Artifacts(self.name, model, task, state=state, info=info)

    def _context_shots(self, task, train: list, state: dict, seed: int) -> list[tuple[str, str]]:
        """Demonstrations with context: each train example with the passage of its gold
        document that holds the answer (or the passage retrieval finds for it)."""
        demos = pick_demos(train, self.config.shots, seed)
        by_doc: dict[str, list[str]] = {}
        for doc_id, text in zip(state["ids"], state["texts"]):
            by_doc.setdefault(doc_id, []).append(text)
        shots = []
        for ex in demos:
            gold = [t for d in ex.meta.get("doc_ids") or () for t in by_doc.get(d, [])]
            if not gold:
                query = state["embedder"].encode([ex.input], batch_size=1)
                _, rows = state["index"].search(np.ascontiguousarray(query, dtype=np.float32), 1)
                gold = [state["texts"][int(rows[0][0])]] if rows[0][0] >= 0 else []
            holding = [t for t in gold if ex.target.lower() in t.lower()]
            shots.append((user_message(task, ex.input, (holding or gold)[:1]), ex.target))
        return shots

    def _embed(self, embedder: Any, texts: list[str], progress: Any, mode: str) -> np.ndarray:
        step, parts = self.config.embed_batch_size, []
        label = "embed corpus" if mode == "corpus" else "embed train examples"
        # Longest first across the whole corpus (not just within a batch): less padding.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with phase(progress, label, len(texts)) as bar:
            for start in range(0, len(texts), step):
                batch = [texts[i] for i in order[start:start + step]]
                parts.append(np.asarray(embedder.encode(batch, batch_size=step), dtype=np.float32))
                bar.advance(len(batch))
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vectors[order] = np.concatenate(parts)
        return vectors

    def predict(self, artifacts: Artifacts, examples, progress=None) -> list[Prediction]:
        if not examples:
            return []
        task, model = artifacts.task, artifacts.model
        prompts, retrieved, share = retrieval_prompts(artifacts.state, self.config, task, model, examples)
        return predict_prompts(model, task, examples, prompts, self.config.batch_size, retrieved=retrieved,
                               extra_latency=[share] * len(examples), progress=progress)


def build(options: Mapping[str, Any] | None = None) -> RagStrategy:
    return RagStrategy(config_from(RagConfig, options or {}, "strategies.rag"))



STRATEGY = StrategyDef(name="rag", config=RagConfig, build=build, predict_batch="batch_size",
                       code=("strategies.rag", "strategies.chunking", "strategies.lexical", "strategies.index_update", "strategies.prompts",
                             "bench.embedder"), learns_from_train=True,
                       update=update_index)

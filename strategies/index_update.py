"""RAG becoming current after a corpus change: re-index only the changed documents.

A chunk's label in the index is its row in the chunk lists (`texts`, `ids`), which only
grow: a removed chunk's row stays (emptied) and is never returned again, a new chunk
takes the next row. How rows leave depends on the index (`LiveIndex`):
- flat: wrapped once in `faiss.IndexIDMap2` (the bench builds a plain flat index;
  its vectors are copied out, no re-embedding) so `remove_ids` and `add_with_ids`
  work by label;
- ivf: IVF lists keep labels already (`add` gave 0..n-1): `remove_ids`, `add_with_ids`;
- hnsw: a graph cannot drop nodes (`remove_ids` is unsupported): removed labels become
  tombstones that each search excludes with an IDSelector, and new vectors are
  appended. Tombstones are counted: past a share of the index, rebuild.
`update_index` (the `update` hook of RAG's StrategyDef) times the incremental update;
when the change asks for it (`compare_rebuild`), also a full rebuild of the changed
corpus, checking that both retrieve the same documents for a few queries (task
questions and the changed documents' own text). The rebuild embeds every document
again (minutes on a big corpus), so it is a check to ask for, not part of the update.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from strategies.chunking import chunk_documents, passage

N_CHECK = 8  # queries compared against the full rebuild: half task questions, half changed documents


class LiveIndex:
    """A FAISS index whose rows are removed and added by label (see the module doc)."""

    def __init__(self, index: Any, kind: str) -> None:
        self.index, self.kind, self.dead = index, kind, set()

    @classmethod
    def of(cls, index: Any, kind: str) -> "LiveIndex":
        """An updatable copy of `index`; the prepared one is left as it is."""
        import faiss

        if isinstance(index, LiveIndex):  # an updated index, updated again
            copy = cls(faiss.clone_index(index.index), index.kind)
            copy.dead = set(index.dead)
            return copy
        if kind == "flat":
            live = faiss.IndexIDMap2(faiss.IndexFlatIP(index.d))
            if index.ntotal:
                live.add_with_ids(index.reconstruct_n(0, index.ntotal), np.arange(index.ntotal, dtype=np.int64))
            return cls(live, kind)
        return cls(faiss.clone_index(index), kind)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) - len(self.dead)

    @property
    def d(self) -> int:
        return int(self.index.d)

    def remove(self, labels: Sequence[int]) -> None:
        if not len(labels):
            return
        if self.kind == "hnsw":
            self.dead.update(int(x) for x in labels)
        else:
            removed = self.index.remove_ids(np.asarray(labels, dtype=np.int64))
            if removed != len(labels):
                raise RuntimeError(f"index update: {len(labels)} chunks to remove, the index held {removed}")

    def add(self, vectors: np.ndarray, first_label: int) -> None:
        if not len(vectors):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.kind == "hnsw":  # append-only: a new node's label is its position
            if first_label != self.index.ntotal:
                raise RuntimeError(f"index update: new HNSW rows start at {self.index.ntotal}, not {first_label}")
            self.index.add(vectors)
        else:
            self.index.add_with_ids(vectors, np.arange(first_label, first_label + len(vectors), dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not self.dead:
            return self.index.search(queries, k)
        import faiss

        batch = faiss.IDSelectorBatch(np.asarray(sorted(self.dead), dtype=np.int64))
        keep = faiss.IDSelectorNot(batch)
        params = faiss.SearchParametersHNSW()
        params.efSearch, params.sel = int(self.index.hnsw.efSearch), keep  # batch and keep stay alive here
        return self.index.search(queries, k, params=params)


def _kind(index: Any, recorded: Any) -> str:
    if recorded in ("flat", "hnsw", "ivf"):
        return str(recorded)
    import faiss

    if hasattr(index, "hnsw"):
        return "hnsw"
    return "ivf" if faiss.try_extract_index_ivf(index) is not None else "flat"


def _top_documents(index: Any, st: dict, cfg: Any, queries: list[str]) -> list[list[tuple[str, float]]]:
    """RAG's dense retrieval (fetch extra, keep the first top_k distinct documents), each
    document with its best chunk's score."""
    from strategies.rag import _tune, distinct_documents

    fetch = min(index.ntotal, cfg.top_k * 5 + 10)
    vectors = np.ascontiguousarray(st["embedder"].encode(queries, batch_size=cfg.embed_batch_size), dtype=np.float32)
    _tune(index.index if isinstance(index, LiveIndex) else index, cfg, fetch)
    scores, rows = index.search(vectors, fetch)
    out = []
    for found, row in zip(scores, rows):
        score = {int(r): float(s) for s, r in zip(found, row) if r >= 0}
        best = distinct_documents(st, [int(r) for r in row if r >= 0], cfg.top_k)
        out.append([(doc, score[r]) for doc, r in best.items()])
    return out


def same_retrieval(a: list[tuple[str, float]], b: list[tuple[str, float]], tol: float = 1e-4) -> bool:
    """The same documents at the same scores, best first. Documents tied (within `tol`)
    with the last one kept may differ: which of equal scores makes the cut depends on
    the index's storage order, not on its content."""
    if len(a) != len(b) or any(abs(x[1] - y[1]) > tol for x, y in zip(a, b)):
        return False
    last = min(a[-1][1], b[-1][1]) if a else 0.0
    return {d for d, s in a if s > last + tol} == {d for d, s in b if s > last + tol}


def check_queries(task: Any, change: Any, n: int = N_CHECK) -> list[str]:
    """Task questions, and the opening words of changed documents (the queries an edit
    must move to the new version)."""
    asked = [ex.input for ex in [*task.validation, *task.test][: n // 2]]
    fresh = [" ".join(d.text.split()[:24]) for d in change.fresh[: n - len(asked)]]
    return asked + fresh


def _chunk(strategy: Any, embedder: Any, documents: Sequence[Any], progress: Any) -> tuple[list[str], list[str], Any]:
    cfg = strategy.config
    chunks = chunk_documents(documents, getattr(embedder, "tokenizer", None), cfg.chunk_tokens, cfg.chunk_overlap)
    titles = {d.id: d.title for d in documents}
    texts = [passage(titles[c.doc_id], c.text) for c in chunks]
    vectors = strategy._embed(embedder, texts, progress, "corpus") if texts else np.zeros((0, 0), np.float32)
    return texts, [c.doc_id for c in chunks], vectors


def incremental(strategy: Any, state: dict, kind: str, change: Any, progress: Any = None) -> tuple[dict, dict]:
    """(the updated state, its facts): only the changed documents are chunked and embedded."""
    embedder = state["embedder"]
    t0 = time.perf_counter()
    live = LiveIndex.of(state["index"], kind)
    convert_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    stale = change.stale
    texts, ids = list(state["texts"]), list(state["ids"])
    old = [label for label, doc in enumerate(ids) if doc is not None and doc in stale]
    new_texts, new_ids, vectors = _chunk(strategy, embedder, change.fresh, progress)
    t_embed = time.perf_counter()
    live.remove(old)
    live.add(vectors, len(texts))
    t_index = time.perf_counter()
    for label in old:  # the row stays (labels are rows); nothing can retrieve it again
        texts[label], ids[label] = "", None
    texts += new_texts
    ids += new_ids
    updated = {**state, "index": live, "texts": texts, "ids": ids}
    lexical_s = 0.0
    if "bm25" in state:  # bm25s indexes in one pass: the lexical index is rebuilt over the rows
        from strategies.lexical import bm25_index

        t_lex = time.perf_counter()
        updated["bm25"] = bm25_index(texts)
        lexical_s = time.perf_counter() - t_lex
    seconds = time.perf_counter() - t1
    return updated, {"chunks_removed": len(old), "chunks_added": len(new_texts), "embed_s": round(t_embed - t1, 4),
                     "index_s": round(t_index - t_embed, 4), "lexical_s": round(lexical_s, 4),
                     "seconds": round(seconds, 4), "convert_s": round(convert_s, 4), "tombstones": len(live.dead),
                     "chunks_live": live.ntotal}


def full_rebuild(strategy: Any, state: dict, change: Any, progress: Any = None) -> tuple[dict, dict]:
    """The changed corpus indexed from scratch, as `prepare` would (without its cache)."""
    from strategies.rag import build_index

    t0 = time.perf_counter()
    texts, ids, vectors = _chunk(strategy, state["embedder"], list(change.documents), progress)
    index, kind = build_index(vectors, strategy.config)
    rebuilt = {**state, "index": index, "texts": texts, "ids": ids}
    if "bm25" in state:
        from strategies.lexical import bm25_index

        rebuilt["bm25"] = bm25_index(texts)
    seconds = time.perf_counter() - t0
    return rebuilt, {"full_rebuild_s": round(seconds, 4),
                                                                 "full_rebuild_chunks": len(texts),
                                                                 "full_rebuild_index": kind}


def update_index(strategy: Any, artifacts: Any, change: Any, progress: Any = None) -> dict[str, Any]:
    """RAG's `update` hook: the incremental update's facts, beside a full rebuild's."""
    state, info = artifacts.state, artifacts.info
    if state.get("mode") != "corpus":
        return {"method": "none", "seconds": 0.0, "basis": "no corpus: the index holds train examples"}
    kind = _kind(state["index"], info.get("index"))
    updated, facts = incremental(strategy, state, kind, change, progress)
    facts.update(method="incremental re-index", index=kind,
                 basis=f"measured: {facts['chunks_removed']} chunks out, {facts['chunks_added']} in ({kind} index)")
    if not getattr(change, "compare_rebuild", False):
        return facts
    rebuilt, rebuild = full_rebuild(strategy, state, change, progress)
    queries = check_queries(artifacts.task, change)
    mine = _top_documents(updated["index"], updated, strategy.config, queries)
    theirs = _top_documents(rebuilt["index"], rebuilt, strategy.config, queries)
    agree = sum(same_retrieval(a, b) for a, b in zip(mine, theirs))
    seconds = facts["seconds"]
    facts.update(rebuild, check_queries=len(queries), check_agree=agree,
                 speedup=round(rebuild["full_rebuild_s"] / seconds, 2) if seconds > 0 else None)
    return facts

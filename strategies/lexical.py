"""The lexical side of RAG's hybrid retrieval: a BM25 index (bm25s) and reciprocal rank
fusion of several rankings."""
from __future__ import annotations

from typing import Any, Sequence


def bm25_index(texts: Sequence[str]) -> Any:
    import bm25s

    index = bm25s.BM25()
    index.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False), show_progress=False)
    return index


def bm25_search(index: Any, n_docs: int, queries: Sequence[str], fetch: int) -> list[list[int]]:
    """Best first; documents sharing no term with the query (score 0) are left out."""
    import bm25s

    rows, scores = index.retrieve(bm25s.tokenize(list(queries), stopwords="en", show_progress=False),
                                  k=min(fetch, n_docs), show_progress=False)
    return [[int(r) for r, sc in zip(row, score) if sc > 0] for row, score in zip(rows, scores)]


def fuse(rankings: Sequence[Sequence[int]], k: int = 60) -> list[int]:
    """Reciprocal rank fusion (Cormack et al. 2009): each list adds 1 / (k + rank)."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            score[item] = score.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(score, key=lambda item: (-score[item], item))

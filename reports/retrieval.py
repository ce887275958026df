"""Retrieval misses against generation misses, for cells with gold documents.

Where a task names the documents that hold each answer (`meta["doc_ids"]`; built-in
QA tasks and user specs with `fields.doc_ids`), each row of a retrieving strategy has
`recall_at_k` 1 (a gold document was among those retrieved) or 0. Splitting the score
by it says which half of RAG limits it:
- perfect retrieval would lift the score from its mean to the score on hits: a gain of
  (1 - recall) x (score on hits - score on misses);
- a perfect reader on the passages already found would lift the hits to 1: a gain of
  recall x (1 - score on hits).
The larger gain names the limit. "gold passage retrieved for 65% of questions; F1 0.06
on those (0.03 without): the model, not retrieval, limits rag here".
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from reports.frame import KEYS

SPLIT_COLUMNS = ["score_retrieved", "score_missed", "rag_limit"]


def retrieval_split(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (task, strategy, model) with recall@k: the score on hits and on misses, and
    which one limits (`rag_limit`: "retrieval" or "generation")."""
    out = []
    if rows.empty or "recall_at_k" not in rows:
        return pd.DataFrame(columns=KEYS + SPLIT_COLUMNS)
    for keys, g in rows.groupby(KEYS, sort=False):
        hit = pd.to_numeric(g["recall_at_k"], errors="coerce")
        g = g[hit.notna()]
        if g.empty:
            continue
        found = hit.dropna() > 0
        r = float(found.mean())
        s_hit = float(g.loc[found[found].index, "score"].mean()) if found.any() else math.nan
        s_miss = float(g.loc[found[~found].index, "score"].mean()) if (~found).any() else math.nan
        out.append({**dict(zip(KEYS, keys)), "score_retrieved": s_hit, "score_missed": s_miss,
                    "rag_limit": limit(r, s_hit, s_miss)})
    return pd.DataFrame(out, columns=KEYS + SPLIT_COLUMNS)


def limit(recall: float, s_hit: float, s_miss: float) -> str | None:
    if math.isnan(recall):
        return None
    if math.isnan(s_hit):
        return "retrieval"  # it never found a gold document
    gain_retrieval = (1 - recall) * (s_hit - (0.0 if math.isnan(s_miss) else s_miss))
    gain_reader = recall * (1 - s_hit)
    return "retrieval" if gain_retrieval > gain_reader else "generation"


def sentence(row: Any, label: str, metric: str) -> str | None:
    """The verdict's retrieval sentence for one summary row (None without recall@k)."""
    r, hit, miss, lim = (row.get(k) for k in ("recall_at_k", "score_retrieved", "score_missed", "rag_limit"))
    if not isinstance(lim, str) or not isinstance(r, (int, float)) or math.isnan(r):
        return None
    on = "" if not isinstance(hit, (int, float)) or math.isnan(hit) else f"; {metric} {hit:.2f} on those"
    off = "" if not isinstance(miss, (int, float)) or math.isnan(miss) else f" ({miss:.2f} without)"
    who = ("the model, not retrieval, limits" if lim == "generation" else "retrieval, not the model, limits")
    return f"{label}: gold passage retrieved for {r:.0%} of questions{on}{off}: {who} {label} here"

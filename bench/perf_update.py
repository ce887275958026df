"""`bench perf --only update`: RAG's incremental re-index against a full rebuild.

The corpus is 10,000 real documents (rotten-tomatoes reviews, the embedded data) with
the real embedder (MiniLM); 1% of them are rewritten (`bench.updates.rewrite_share`).
Both paths run back to back in one process: the incremental update (chunk and embed
the changed documents, `remove_ids` / `add_with_ids` by label) and a full rebuild
(chunk, embed and index the whole changed corpus), and their retrieval is compared
on queries aimed at the changed documents and at untouched ones.
"""
from __future__ import annotations

from bench.perf import CaseResult, ratio_result


def update_case(ctx, n_docs: int | None = None, fraction: float = 0.01) -> CaseResult:
    from bench.embedder import load_embedder
    from bench.updates import rewrite_share
    from strategies.base import Budget
    from strategies.index_update import _top_documents, full_rebuild, incremental, same_retrieval
    from strategies.rag import RagConfig, RagStrategy
    from tasks.model import Document, Task

    n = n_docs or ctx.n(10_000, 500)
    reviews = ctx.task("rotten-tomatoes")
    texts = [ex.input for ex in [*reviews.train, *reviews.validation, *reviews.test]][:n]
    docs = [Document(f"r{i}", text) for i, text in enumerate(texts)]
    task = Task(name="reviews-corpus", kind="qa", instruction="Answer.", train=[], validation=[],
                test=reviews.test[:2], corpus=docs, metric="f1")
    strategy = RagStrategy(RagConfig(index="flat", cache=False, shots=0), embedder=load_embedder())
    artifacts = strategy.prepare(task, ctx.handle, Budget(cache=False))  # the index the update starts from
    change = rewrite_share(docs, fraction, seed=0)
    updated, facts = incremental(strategy, artifacts.state, "flat", change)
    rebuilt, rebuild = full_rebuild(strategy, artifacts.state, change)
    queries = [" ".join(d.text.split()[:12]) for d in change.fresh[:50]] + [ex.input for ex in reviews.test[:50]]
    mine = _top_documents(updated["index"], updated, strategy.config, queries)
    theirs = _top_documents(rebuilt["index"], rebuilt, strategy.config, queries)
    same = sum(same_retrieval(a, b) for a, b in zip(mine, theirs))
    return ratio_result(
        "rag update", rebuild["full_rebuild_s"], facts["seconds"], 10.0, agree=f"{same}/{len(queries)} same top-3",
        baseline=f"full rebuild {rebuild['full_rebuild_s']:.1f} s", optimised=f"incremental {facts['seconds']:.2f} s",
        note=f"{n:,} rotten-tomatoes reviews as documents, {len(change.edited)} ({fraction:.0%}) rewritten, "
             f"MiniLM embedder, flat index; one-off ID map {facts['convert_s']:.2f} s not counted",
        details={"agreed": same == len(queries), **facts, **rebuild})

"""Retrieval hot path: query embedding (hashing stand-in) and FAISS search, flat and the
approximate index RAG builds past `flat_max`, on seeded synthetic vectors."""
import dataclasses

import numpy as np
import pytest

from bench.perf_cases import synthetic_vectors
from strategies.rag import RagConfig, _tune, build_index

N, QUERIES = 5_000, 64


@pytest.fixture(scope="module")
def vectors():
    data = synthetic_vectors(N + QUERIES, seed=1)
    return data[:N], data[N:]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search(benchmark, vectors, kind):
    base, queries = vectors
    cfg = dataclasses.replace(RagConfig(), index=kind)
    index, built = build_index(base, cfg)
    _tune(index, cfg, 10)
    _, rows = benchmark(index.search, queries, 10)
    assert built == kind and rows.shape == (QUERIES, 10) and (rows >= 0).all()


def test_rag_predict_retrieval_part(benchmark, hashing_embedder, fake_handle):
    """RAG's predict on a fake model: what is left is embedding, search and prompt building."""
    from fakes import toy_qa
    from strategies.base import Budget
    from strategies.rag import RagStrategy

    task = toy_qa()
    rag = RagStrategy(RagConfig(cache=False), embedder=hashing_embedder)
    art = rag.prepare(task, fake_handle, Budget(seed=0))
    preds = benchmark(rag.predict, art, task.test * 16)
    assert len(preds) == len(task.test) * 16 and all(p.retrieved_ids for p in preds)
    assert np.isfinite([p.latency_s for p in preds]).all()

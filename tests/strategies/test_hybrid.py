"""Hybrid retrieval in rag: bm25 (bm25s) and dense rankings fused by reciprocal rank;
recall@k of each retriever on the validation split; `--no-cache` reaches the index cache."""
import pytest

from bench.errors import BenchError
from fakes import FakeHandle, HashingEmbedder, toy_qa
from strategies.base import Budget
from strategies.lexical import fuse
from strategies.rag import RagConfig, RagStrategy


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path))
    return tmp_path / "indexes"


def test_reciprocal_rank_fusion_rewards_agreement():
    # 1 (ranks 1 and 3: 1/61 + 1/63) edges out 2 (rank 2 twice: 2/62); both beat what one list found.
    fused = fuse([[1, 2, 3], [4, 2, 1]], k=60)
    assert fused == [1, 2, 4, 3]
    assert fuse([[5, 6]], k=1) == [5, 6] and fuse([[], []]) == []


def test_bm25_finds_what_a_weak_dense_embedder_misses_and_hybrid_keeps_it():
    task = toy_qa()  # each question names its gadget; the gold document says its colour
    weak = HashingEmbedder(dim=2)  # almost every word collides: dense ranking is close to noise
    facts = {}
    for retriever in ("dense", "bm25", "hybrid"):
        strategy = RagStrategy(RagConfig(top_k=1, retriever=retriever, compare_retrievers=True), embedder=weak)
        art = strategy.prepare(task, FakeHandle(), Budget())
        preds = strategy.predict(art, task.test)
        facts[retriever] = [p.retrieved_ids[0] in ex.meta["doc_ids"] for p, ex in zip(preds, task.test)]
        assert art.info["retriever"] == retriever
    recall = {k: v for k, v in art.info.items() if k.startswith("val_recall_at_k_")}
    assert recall["val_recall_at_k_bm25"] == 1.0 and recall["val_recall_at_k_dense"] < 1.0
    assert recall["val_recall_at_k_hybrid"] >= recall["val_recall_at_k_dense"]
    assert all(facts["bm25"]) and not all(facts["dense"])


def test_retriever_option_is_checked():
    with pytest.raises(BenchError, match="rag.retriever must be one of dense, bm25, hybrid"):
        RagConfig(retriever="sparse")


def test_no_cache_budget_writes_no_index(index_cache):
    strategy = RagStrategy(RagConfig(top_k=1), embedder=HashingEmbedder())
    strategy.prepare(toy_qa(), FakeHandle(), Budget(cache=False))
    assert not index_cache.exists() or not list(index_cache.iterdir())
    strategy.prepare(toy_qa(), FakeHandle(), Budget())
    assert len(list(index_cache.iterdir())) == 1

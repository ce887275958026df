"""RAG's incremental re-index: the same retrieval as a full rebuild, and faster on a small change."""
import random
from dataclasses import replace
from types import SimpleNamespace

import pytest

import strategies.index_update

from bench.updates import DocChange, apply_changes, measure_cell, rewrite_share
from fakes import FakeHandle, HashingEmbedder
from strategies.base import Budget
from strategies.index_update import _top_documents, full_rebuild, incremental, same_retrieval, update_index
from strategies.rag import RagConfig, RagStrategy
from tasks.model import Document, Example, Task

WORDS = [f"w{i}" for i in range(3000)]


def corpus_task(n_docs: int, words_per_doc: int = 24, seed: int = 0) -> Task:
    rng = random.Random(seed)
    docs = [Document(f"doc{i}", " ".join(rng.sample(WORDS, words_per_doc)) + ".", f"title {i}")
            for i in range(n_docs)]
    questions = [Example(f"q{i}", " ".join(docs[i * 7 % n_docs].text.split()[:6]), "x",
                         {"doc_ids": [docs[i * 7 % n_docs].id]}) for i in range(12)]
    return Task(name="toy-corpus", kind="qa", instruction="Answer.", train=questions[:4], validation=questions[4:8],
                test=questions[8:], corpus=docs, metric="f1")


def prepared(task: Task, index: str, **options):
    strategy = RagStrategy(RagConfig(index=index, top_k=3, shots=0, cache=False, **options),
                           embedder=HashingEmbedder(256))
    return strategy, strategy.prepare(task, FakeHandle(), Budget(cache=False))


def planted_change(task: Task):
    rng = random.Random(1)
    ids = [d.id for d in task.corpus]
    edited, deleted = ids[10:16], ids[40:43]
    changes = [DocChange(i, " ".join(rng.sample(WORDS, 24)) + ".") for i in edited]
    changes += [DocChange(i) for i in deleted]
    changes += [DocChange(f"new{j}", " ".join(rng.sample(WORDS, 30)) + ".", f"new title {j}") for j in range(4)]
    return apply_changes(task.corpus, changes, "planted"), edited, deleted


@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
def test_incremental_update_retrieves_what_a_full_rebuild_retrieves(index):
    task = corpus_task(400)
    strategy, artifacts = prepared(task, index)
    before = artifacts.info["index_sha256"]
    change, edited, deleted = planted_change(task)
    updated, facts = incremental(strategy, artifacts.state, index, change)
    rebuilt, _ = full_rebuild(strategy, artifacts.state, change)
    assert facts["chunks_removed"] == len(edited) + len(deleted)
    assert facts["chunks_added"] == len(edited) + 4
    assert updated["index"].ntotal == rebuilt["index"].ntotal == len(change.documents)
    assert facts["tombstones"] == (facts["chunks_removed"] if index == "hnsw" else 0)
    # Queries aimed at changed, deleted, added and untouched documents, plus the task's own.
    old = {d.id: d for d in task.corpus}
    queries = [" ".join(d.text.split()[:8]) for d in change.fresh]
    queries += [" ".join(old[i].text.split()[:8]) for i in edited + deleted]
    queries += [" ".join(d.text.split()[3:11]) for d in task.corpus[100:130]]
    queries += [ex.input for ex in task.test]
    mine = _top_documents(updated["index"], updated, strategy.config, queries)
    theirs = _top_documents(rebuilt["index"], rebuilt, strategy.config, queries)
    assert all(same_retrieval(a, b) for a, b in zip(mine, theirs))
    assert sum(a == b for a, b in zip(mine, theirs)) >= len(queries) * 0.8  # ties aside, identical
    assert not {d for top in mine for d, _ in top} & set(deleted)
    assert [top[0][0] for top in mine[:len(change.fresh)]] == [d.id for d in change.fresh]  # the new version wins
    # The prepared index (what the cell predicted with) is untouched.
    from strategies.rag import _index_sha256

    assert _index_sha256(artifacts.state["index"]) == before


def test_ties_at_the_cut_may_differ_but_nothing_else():
    assert same_retrieval([("a", 0.9), ("b", 0.5)], [("a", 0.9), ("c", 0.5)])
    assert not same_retrieval([("a", 0.9), ("b", 0.5)], [("c", 0.9), ("b", 0.5)])
    assert not same_retrieval([("a", 0.9), ("b", 0.5)], [("a", 0.9), ("b", 0.4)])
    assert not same_retrieval([("a", 0.9)], [("a", 0.9), ("b", 0.5)])


def test_the_hook_checks_against_a_rebuild_and_a_second_update_goes_on_from_the_first():
    task = corpus_task(200)
    strategy, artifacts = prepared(task, "flat")
    change, _, _ = planted_change(task)
    facts = update_index(strategy, artifacts, replace(change, compare_rebuild=True))
    assert facts["check_queries"] == 8 and facts["check_agree"] == 8
    assert facts["method"] == "incremental re-index" and facts["full_rebuild_chunks"] == len(change.documents)
    # Editing an already-updated corpus again: only the live chunks of the edited documents leave.
    once, _ = incremental(strategy, artifacts.state, "flat", change)
    again = apply_changes(list(change.documents), [DocChange("doc10", "entirely w1 w2 w3 new words.")], "again")
    twice, facts2 = incremental(strategy, once, "flat", again)
    assert facts2["chunks_removed"] == 1 and facts2["chunks_added"] == 1
    rebuilt, _ = full_rebuild(strategy, artifacts.state, again)
    queries = ["entirely w1 w2 w3 new words", *[" ".join(d.text.split()[:8]) for d in again.documents[:40]]]
    mine = _top_documents(twice["index"], twice, strategy.config, queries)
    assert all(same_retrieval(a, b) for a, b in zip(mine, _top_documents(rebuilt["index"], rebuilt, strategy.config,
                                                                         queries)))
    assert mine[0][0][0] == "doc10"


def test_without_compare_rebuild_only_the_incremental_update_is_timed(monkeypatch):
    task = corpus_task(200)
    strategy, artifacts = prepared(task, "flat")
    change, _, _ = planted_change(task)

    def no_rebuild(*a, **k):
        raise AssertionError("a full rebuild was run")

    monkeypatch.setattr(strategies.index_update, "full_rebuild", no_rebuild)
    # As a cell measures it: the run's config decides (compare_rebuild is off by default).
    config = SimpleNamespace(corpus_change=0.05, data_seed=0)
    facts = measure_cell(config, SimpleNamespace(strategy=SimpleNamespace(name="rag")), task, strategy, artifacts, {})
    assert "error" not in facts, facts
    assert facts["method"] == "incremental re-index" and facts["seconds"] > 0 and facts["docs_edited"] == 10
    assert facts["chunks_removed"] == facts["chunks_added"] == 10
    assert not {"full_rebuild_s", "check_queries", "speedup"} & set(facts)
    config.compare_rebuild = True
    facts = measure_cell(config, SimpleNamespace(strategy=SimpleNamespace(name="rag")), task, strategy, artifacts, {})
    assert facts["error"] == "AssertionError: a full rebuild was run"  # asked for: the rebuild runs


def test_hybrid_retrieval_gets_its_lexical_index_rebuilt_over_the_rows():
    task = corpus_task(120)
    strategy, artifacts = prepared(task, "flat", retriever="hybrid")
    change, _, deleted = planted_change(task)
    updated, facts = incremental(strategy, artifacts.state, "flat", change)
    from strategies.rag import search

    fresh = change.fresh[0]
    rows = search(updated, strategy.config, [" ".join(fresh.text.split()[:8])], 10, "bm25")[0]
    assert updated["ids"][rows[0]] == fresh.id and facts["lexical_s"] > 0
    assert not {updated["ids"][r] for r in rows} & set(deleted)


def test_one_percent_of_ten_thousand_documents_reindexes_much_faster_than_a_rebuild():
    task = corpus_task(10_000, words_per_doc=30)
    strategy, artifacts = prepared(task, "flat")
    change = rewrite_share(task.corpus, 0.01, seed=0)
    assert len(change.edited) == 100
    facts = update_index(strategy, artifacts, replace(change, compare_rebuild=True))
    ratio = facts["full_rebuild_s"] / facts["seconds"]
    print(f"\nhashing embedder, 10,000 docs, 1% edited: incremental {facts['seconds']:.3f}s "
          f"(+ one-off ID map {facts['convert_s']:.3f}s), full rebuild {facts['full_rebuild_s']:.3f}s, {ratio:.1f}x")
    assert facts["check_agree"] == facts["check_queries"]
    assert ratio >= 10, facts

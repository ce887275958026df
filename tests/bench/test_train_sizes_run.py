"""A learning curve run end to end on the tiny in-process Llama: the cells per size, what
each cell learned from, one shared corpus index, and the report's curve section."""
import pytest

import bench.backends
import strategies.rag
import tasks as tasks_pkg
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import read_jsonl
from reports import render_run
from fakes import FakeHandle, HashingEmbedder, tiny_handle, toy_classification, toy_qa

FAST_LORA = {"name": "lora", "max_steps": 2, "learning_rate": 0.05, "batch_size": 2, "eval_every": 2,
             "patience": 100, "dropout": 0.0, "max_val_examples": 2, "forgetting": False}


@pytest.fixture
def toy_tasks(monkeypatch):
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: {"toy-cls": toy_classification,
                                                                      "toy-qa": toy_qa}[name]())
    monkeypatch.setattr(strategies.rag, "load_embedder", lambda *a, **k: HashingEmbedder())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-qa", "fakes:toy_qa")


def test_learning_curve_on_the_tiny_model(tmp_path, monkeypatch, toy_tasks):
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: tiny_handle())
    cfg = RunConfig(tasks=["toy-cls"], out=str(tmp_path), name="curve", limit=4, latency_sample=0, warmup=0,
                    strategies=["prompting", FAST_LORA],
                    train_sizes=[2, 6], seeds=[0])
    run_dir = Runner(cfg, log=lambda *_: None).run()
    render_run(run_dir)
    cells = {c["strategy"]: c for c in read_jsonl(run_dir / "cells.jsonl")}
    assert sorted(cells) == ["lora(n=2)", "lora(n=6)", "prompting"]  # zero-shot prompting runs once
    assert all(c["status"] == "ok" for c in cells.values())
    for n in (2, 6):  # (k-shot prompting's and RAG's subsets: tests/bench/test_train_sizes.py)
        assert cells[f"lora(n={n})"]["info"]["train_examples"] == n
    assert cells["prompting"]["info"]["shots"] == 0
    html = (run_dir / "report.html").read_text()
    md = (run_dir / "summary.md").read_text()
    assert "Learning curve: score against labelled examples" in html and "<svg" in html
    assert "accuracy against labelled examples, toy-sentiment" in html
    assert "Learning curve (score [95% CI] by labelled train examples" in md
    assert "| strategy | n=2 | n=6 |" in md and "prompting (no train data)" in md
    # One sentence for the one pair with a curve, naming the flat reference.
    section = md.split("Learning curve (score")[1].split("| strategy |")[0]
    assert section.count("\n- ") == 1 and "prompting (no train data)" in section


def test_sizes_share_one_corpus_index(tmp_path, monkeypatch, toy_tasks):
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: FakeHandle(reply="blue"))
    cfg = RunConfig(tasks=["toy-qa"], strategies=["rag"], out=str(tmp_path), name="rag-curve", limit=2,
                    latency_sample=0, warmup=0, train_sizes=[1, 4])
    run_dir = Runner(cfg, log=lambda *_: None).run()
    infos = {c["strategy"]: c["info"] for c in read_jsonl(run_dir / "cells.jsonl")}
    assert sorted(infos) == ["rag(n=1)", "rag(n=4)"]
    # The corpus index is keyed by the corpus, not the train size: the second size reads it from the cache.
    assert infos["rag(n=1)"]["cache_key"] == infos["rag(n=4)"]["cache_key"] and infos["rag(n=4)"]["cached"]
    assert infos["rag(n=1)"]["index_sha256"] == infos["rag(n=4)"]["index_sha256"]
    assert infos["rag(n=1)"]["shots"] == 1 and infos["rag(n=4)"]["shots"] == 2

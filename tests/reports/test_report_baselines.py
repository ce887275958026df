"""Trivial baselines: majority-class and uniform-random rows for classification, empty
and top-train-answer rows for QA, a paired test against the constant predictor, and
the verdict sentence when a strategy does not beat it."""
from __future__ import annotations

import json

import pytest

from bench.store import RunStore, cell_id
from reports import load_run, render_run, summarize
from reports.compare_pairs import compare_strategies, find
from reports.html import render_html_text
from reports.markdown import summary_markdown
from reports.trivial import MAJORITY, TOP_ANSWER, UNIFORM, EMPTY
from reports.verdict import display_labels, verdict

MODEL = "tiny"
N = 60
LABELS = ["news", "sport", "tech"]


def _target(i: int) -> str:
    # Half the test set is "news", a quarter each "sport" and "tech".
    return "news" if i % 2 == 0 else ("sport" if i % 4 == 1 else "tech")


def build_classifier_run(root):
    """`always` answers the majority label; `good` is right on 55 of 60."""
    store = RunStore(root)
    for strategy in ("always", "good"):
        cell = cell_id("topics", strategy, MODEL, 0)
        rows = []
        for i in range(N):
            target = _target(i)
            output = "news" if strategy == "always" else (target if i >= 5 else "tech")
            rows.append({"cell": cell, "task": "topics", "strategy": strategy, "model": MODEL, "seed": 0,
                         "example_id": f"e{i}", "input": f"q{i}", "target": target, "output": output,
                         "score": float(output == target), "latency_s": 0.01, "prompt_tokens": 5,
                         "completion_tokens": 1, "truncated": False})
        store.append_rows(rows)
        store.append_cell({"cell": cell, "task": "topics", "strategy": strategy, "model": MODEL, "seed": 0,
                           "status": "ok", "metric": "accuracy", "n": N, "prepare_s": 1.0, "predict_s": 1.0,
                           "device": "cpu", "info": {}})
    store.write_json("manifest.json", {"name": "b", "tasks": {"topics": {
        "labels": LABELS, "train_label_counts": {"news": 50, "sport": 30, "tech": 20}}}})
    return root


def test_majority_classifier_ties_majority_baseline_and_verdict_says_so(tmp_path):
    frames = load_run(build_classifier_run(tmp_path / "run"))
    summary = summarize(frames, baselines=True)
    base = summary.set_index("strategy")
    assert base.loc[MAJORITY, "status"] == "baseline"
    assert base.loc[MAJORITY, "score"] == pytest.approx(0.5)
    # Constant "news": F1(news) = 2*30/(2*30+30) = 2/3, others 0 -> macro 2/9.
    assert base.loc[MAJORITY, "macro_f1"] == pytest.approx(2 / 9)
    assert base.loc[UNIFORM, "score"] == pytest.approx(1 / 3)
    # Expected macro-F1 of a uniform guess: mean of 2p/(3p+1) over p = 1/2, 1/4, 1/4.
    want = (2 * 0.5 / 2.5 + 2 * (2 * 0.25 / 1.75)) / 3
    assert base.loc[UNIFORM, "macro_f1"] == pytest.approx(want)
    comparisons = compare_strategies(frames)
    pair = find(comparisons, "topics", MODEL, "always", MAJORITY)
    assert pair is not None and pair["verdict"] == "tie" and pair["diff"] == 0.0
    good = find(comparisons, "topics", MODEL, "good", MAJORITY)
    assert good["verdict"] == "good better"
    text = verdict(summary, display_labels(summary), "accuracy", comparisons)
    assert "always is no better than the trivial majority-class baseline (0.50" in text
    assert "good is no better" not in text and "good and always" not in text
    # the baselines are not candidates for "most accurate" or "cheapest"
    assert text.startswith("good is most accurate")


def test_baselines_reach_every_table(tmp_path):
    root = build_classifier_run(tmp_path / "run")
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    render_run(root, console=Console(file=out, width=120))
    assert MAJORITY in out.getvalue() and UNIFORM in out.getvalue()
    csv = (root / "summary.csv").read_text()
    assert f"topics,{MAJORITY},{MODEL}" in csv and "baseline" in csv
    md = (root / "summary.md").read_text()
    assert f"| {MAJORITY} |" in md
    html = (root / "report.html").read_text()
    assert 'class="baseline"' in html  # the reference line in the accuracy/cost chart
    assert html.count(MAJORITY) >= 2
    doc = json.loads((root / "summary.json").read_text())
    assert any(r["strategy"] == MAJORITY for r in doc["summary"])
    # break-even and cost never pair a baseline
    assert MAJORITY not in (root / "break_even.csv").read_text()


def test_qa_baselines_score_empty_and_top_answer(tmp_path):
    store = RunStore(tmp_path / "qa")
    cell = cell_id("qa", "prompting", MODEL, 0)
    rows = []
    answers = [["Paris", "paris france"], ["1999"], ["Paris"], ["blue"]]
    for i, ans in enumerate(answers):
        rows.append({"cell": cell, "task": "qa", "strategy": "prompting", "model": MODEL, "seed": 0,
                     "example_id": f"q{i}", "input": "?", "target": ans[0], "answers": ans, "output": "x",
                     "score": 0.0, "latency_s": 0.1, "prompt_tokens": 5, "completion_tokens": 1})
    store.append_rows(rows)
    store.append_cell({"cell": cell, "task": "qa", "strategy": "prompting", "model": MODEL, "seed": 0,
                       "status": "ok", "metric": "f1", "n": 4, "prepare_s": 0.0, "predict_s": 1.0, "info": {}})
    store.write_json("manifest.json", {"tasks": {"qa": {"train_top_answer": "Paris", "train_top_answer_n": 7}}})
    summary = summarize(load_run(tmp_path / "qa"), baselines=True).set_index("strategy")
    assert summary.loc[EMPTY, "score"] == 0.0
    # F1 of "Paris": 1 (best of "Paris" and "paris france"), 0, 1, 0.
    assert summary.loc[TOP_ANSWER, "score"] == pytest.approx(0.5)


def test_run_without_train_counts_has_no_baselines(run_dir):
    summary = summarize(load_run(run_dir), baselines=True)
    assert not (summary["status"] == "baseline").any()
    assert MAJORITY not in summary_markdown(summary)
    assert f"<td>{MAJORITY}</td>" not in render_html_text(load_run(run_dir), summary)


def test_manifest_facts_from_train_split():
    from bench.metrics import train_answer_facts
    from fakes import toy_classification, toy_qa

    task = toy_classification()
    facts = train_answer_facts(task)
    assert facts["labels"] == list(task.labels)
    assert sum(facts["train_label_counts"].values()) == len(task.train)
    qa = toy_qa()
    top = train_answer_facts(qa)
    assert top["train_top_answer_n"] == max(sum(e.target == t for e in qa.train) for t in {e.target for e in qa.train})

import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.store import RunStore
from reports.frame import PREFERENCES, best_index, load_run
from reports.summary import COLUMNS, summarize, write_summary

from conftest import FAILED_ERROR, MODEL, PLAN, QA, SENTIMENT


def _row(summary, task, strategy):
    hit = summary[(summary["task"] == task) & (summary["strategy"] == strategy)]
    assert len(hit) == 1
    return hit.iloc[0]


def _cell_expect(key):
    plan = PLAN[key]
    lat = np.array([p[1] for p in plan]) * 1000
    return {"score": np.mean([p[0] for p in plan]), "p50": np.percentile(lat, 50), "p95": np.percentile(lat, 95),
            "prompt": np.mean([p[2] for p in plan])}


def test_load_run_frames(run_dir):
    frames = load_run(run_dir)
    assert len(frames.rows) == sum(len(p) for p in PLAN.values())
    assert len(frames.cells) == len(PLAN) + 1
    assert frames.manifest["name"] == "synthetic" and frames.name == "synthetic"
    assert frames.rows["score"].dtype == "float64"


def test_missing_run_folder_is_a_bench_error(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="rows.jsonl"):
        load_run(tmp_path / "empty")


def test_summary_one_row_per_task_strategy_model(run_dir):
    summary = summarize(load_run(run_dir))
    assert list(summary.columns) == COLUMNS
    assert len(summary) == 6
    assert set(summary["model"]) == {MODEL}


@pytest.mark.parametrize("task,strategy", [(SENTIMENT, "rag"), (SENTIMENT, "lora"), (QA, "prompting"), (QA, "rag")])
def test_single_seed_values(run_dir, task, strategy):
    row = _row(summarize(load_run(run_dir)), task, strategy)
    exp = _cell_expect((task, strategy, 0))
    assert row["n"] == len(PLAN[(task, strategy, 0)]) and row["n_seeds"] == 1
    assert row["score"] == pytest.approx(exp["score"])
    assert row["latency_p50_ms"] == pytest.approx(exp["p50"])
    assert row["latency_p95_ms"] == pytest.approx(exp["p95"])
    assert row["prompt_tokens_mean"] == pytest.approx(exp["prompt"])
    assert row["completion_tokens_mean"] == pytest.approx(3.0)
    assert row["truncated_n"] == (1 if len(PLAN[(task, strategy, 0)]) == 5 else 0)
    assert row["status"] == "ok" and pd.isna(row["error"])


def test_seeds_are_averaged(run_dir):
    row = _row(summarize(load_run(run_dir)), SENTIMENT, "prompting")
    a, b = _cell_expect((SENTIMENT, "prompting", 0)), _cell_expect((SENTIMENT, "prompting", 1))
    assert row["n_seeds"] == 2 and row["n"] == 5
    assert row["score"] == pytest.approx((a["score"] + b["score"]) / 2)
    assert row["score_std"] == pytest.approx(np.std([a["score"], b["score"]], ddof=1))
    assert row["latency_p95_ms"] == pytest.approx((a["p95"] + b["p95"]) / 2)
    assert row["prepare_s"] == pytest.approx((1.5 + 2.5) / 2)


def test_companion_metrics(run_dir):
    summary = summarize(load_run(run_dir))
    qa_rag = _row(summary, QA, "rag")
    assert qa_rag["exact_match"] == pytest.approx(2 / 3)
    assert qa_rag["f1"] == pytest.approx(np.mean([1.0, 1.0, 0.5]))
    assert qa_rag["recall_at_k"] == pytest.approx(1 / 3)
    assert qa_rag["metric"] == "exact_match"
    assert math.isnan(_row(summary, SENTIMENT, "prompting")["recall_at_k"])


def test_failed_cell_reported_with_error(run_dir):
    row = _row(summarize(load_run(run_dir)), QA, "lora")
    assert row["status"] == "failed"
    assert row["error"] == FAILED_ERROR
    assert math.isnan(row["score"]) and row["n"] == 0 and row["n_seeds"] == 0


def test_rerun_record_wins_and_torn_line_skipped(run_dir):
    store = RunStore(run_dir)
    frames = load_run(run_dir)
    failed = frames.cells[frames.cells["status"] == "failed"].iloc[0].to_dict()
    store.append_rows([{"cell": failed["cell"], "task": QA, "strategy": "lora", "model": MODEL, "seed": 0,
                        "example_id": "ex0", "score": 1.0, "latency_s": 0.2, "truncated": False}])
    store.append_cell(dict(failed, status="ok", error=None))
    with open(store.rows_path, "a") as fh:
        fh.write('{"cell": "torn')
    row = _row(summarize(load_run(run_dir)), QA, "lora")
    assert row["status"] == "ok" and row["score"] == 1.0 and row["n"] == 1


def test_rows_without_cell_record_are_incomplete(run_dir):
    RunStore(run_dir).append_rows([{"cell": "x|prompting|m|seed0", "task": "x", "strategy": "prompting",
                                    "model": "m", "seed": 0, "example_id": "e", "score": 1.0, "latency_s": 0.1}])
    row = _row(summarize(load_run(run_dir)), "x", "prompting")
    assert row["status"] == "incomplete" and "stopped" in row["error"]


def test_preferences_and_best(run_dir):
    summary = summarize(load_run(run_dir))
    sentiment = summary[summary["task"] == SENTIMENT]
    assert PREFERENCES["latency_p50_ms"] == "lower" and PREFERENCES["score"] == "higher"
    assert sentiment.loc[best_index(sentiment, "score"), "strategy"] == "lora"
    assert sentiment.loc[best_index(sentiment, "latency_p50_ms"), "strategy"] == "lora"
    assert sentiment.loc[best_index(sentiment, "prompt_tokens_mean"), "strategy"] == "lora"


def test_write_summary_files(run_dir):
    paths = write_summary(run_dir)
    assert {p.name for p in paths.values()} == {"summary.csv", "summary.json", "summary.md", "comparisons.csv",
                                                "break_even.csv", "latency_comparisons.csv"}
    doc = json.loads((run_dir / "summary.json").read_text())
    assert set(doc) == {"run", "price_table", "summary", "comparisons", "break_even", "latency_comparisons"}
    records = doc["summary"]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(records) == 6 and failed[0]["score"] is None and failed[0]["error"] == FAILED_ERROR
    assert (run_dir / "summary.csv").read_text().splitlines()[0].startswith("task,strategy,model,metric")

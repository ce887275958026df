"""The peer cases of `bench perf` on the tiny in-process model: lm-eval's label scoring
and Trainer + PEFT against the bench on the same inputs, or a skipped row that says why."""
import importlib.util

import pytest
from rich.console import Console

import bench.perf_peers as peers
from bench.perf import render_table
from bench.perf_cases import PerfContext
from fakes import toy_classification


@pytest.fixture
def ctx(tiny, tmp_path):
    context = PerfContext(handle=tiny, quick=True, workdir=tmp_path)
    for name in ("rotten-tomatoes", "bbc-news"):
        context._tasks[name] = toy_classification()
    return context


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm_eval is not installed (the peers extra)")
def test_lm_eval_peer_picks_the_same_labels_as_the_bench(ctx):
    result = peers.lm_eval_case(ctx, "rotten-tomatoes", n=6, batch_size=4)
    assert result.details["same"] == 6 and result.details["agreed"]
    assert result.details["accuracy_bench"] == result.details["accuracy_lm_eval"]
    assert result.value == pytest.approx(result.details["lm_eval_s"] / result.details["bench_s"])


def test_trainer_peer_trains_the_same_examples(ctx):
    result = peers.trainer_case(ctx, steps=2, batch_size=2, max_length=64, lr=0.05, task_name="bbc-news")
    d = result.details
    assert d["tokens"] > 0 and d["bench_s"] > 0 and d["trainer_s"] > 0
    assert d["val_loss_bench"] != d["val_loss_trainer"]  # two real trainings in their own orders, two losses
    # From one initial adapter over the same batches both trainers take the same steps.
    same = d["same_steps"]
    assert len(same["bench"]) == len(same["trainer"]) == 2 and same["gap"] < 1e-3 and d["agreed"]
    assert result.value == pytest.approx(d["trainer_s"] / d["bench_s"])


def test_a_missing_peer_is_a_skipped_row_whose_reason_is_printed(ctx, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    result = peers.lm_eval_case(ctx, "bbc-news")
    assert result.value is None and result.passed is None
    console = Console(record=True, width=200)
    render_table([result], console=console)
    text = console.export_text()
    assert "skip" in text and "lm_eval is not installed" in text and "[peers]" in text

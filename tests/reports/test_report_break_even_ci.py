"""Break-even with its interval, the hosted-API cost column, and throughput in tokens/s."""
import math

import pytest

from bench.cost import API_PRICES
from bench.store import RunStore
from reports.costs import break_even_frame
from reports.frame import load_run
from reports.summary import summarize


def _prompting_vs_rag(frames, with_rows=True):
    breaks = break_even_frame(summarize(frames), frames if with_rows else None)
    return breaks[(breaks["a"] == "prompting") & (breaks["b"] == "rag")].iloc[0]


def test_constant_latencies_give_a_zero_width_interval_at_the_point(planted_dir):
    row = _prompting_vs_rag(load_run(planted_dir))
    assert row["queries"] == pytest.approx(400)
    assert row["queries_ci_low"] == pytest.approx(400) and row["queries_ci_high"] == pytest.approx(400)
    assert row["meaning"].endswith("after 400 queries (95% CI 400 to 400)")


def test_noisy_latencies_give_an_interval_around_the_point(planted_dir):
    # Spread rag's per-query times around the same mean: the point stays, an interval opens.
    # Re-appended rows replace the first ones (the last write of a (cell, example) wins).
    store = RunStore(planted_dir)
    rag = [r for r in store.read_rows() if r["strategy"] == "rag"]
    for i, r in enumerate(rag):
        r["latency_s"] = 0.1 * (0.2 if i % 2 else 1.8)
    store.append_rows(rag)
    frames = load_run(planted_dir)
    row = _prompting_vs_rag(frames)
    assert row["queries"] == pytest.approx(400)
    assert row["queries_ci_low"] < 400 < row["queries_ci_high"]
    # Without the rows there is no interval, only the point.
    assert _prompting_vs_rag(frames, with_rows=False)["queries_ci_low"] is None


def test_api_cost_per_1k_from_mean_tokens(planted_dir):
    RunStore(planted_dir).write_json("manifest.json", {"hardware": {"gpu": "NVIDIA H100"},
                                                       "cost": {"api_model": "gpt-4o"}})
    summary = summarize(load_run(planted_dir))
    price = API_PRICES["gpt-4o"]
    expected = 1000 * (10 * price.input_per_m + 1 * price.output_per_m) / 1e6  # 10 prompt, 1 completion token
    assert (summary["api_model"] == "gpt-4o").all()
    assert summary["api_cost_per_1k_usd"].tolist() == pytest.approx([expected] * 3)


def test_generated_tokens_per_second_is_pooled_over_predict_time(planted_dir):
    summary = summarize(load_run(planted_dir)).set_index("strategy")
    # 40 queries x 1 completion token over predict_s (prompting 40 s, rag 4 s).
    assert summary.loc["prompting", "gen_tokens_per_s"] == pytest.approx(1.0)
    assert summary.loc["rag", "gen_tokens_per_s"] == pytest.approx(10.0)
    assert summary.loc["rag", "completion_tokens_p95"] == pytest.approx(1.0)
    assert math.isnan(summary.loc["rag", "energy_j_per_query"])  # no NVML reading: unknown, not zero

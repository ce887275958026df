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


def test_one_shared_timing_gives_an_uncertain_interval_not_a_collapsed_one(planted_dir):
    # Every query of a cell shares one time (one batch): no noise is known, so no
    # "400 to 400", but "uncertain".
    row = _prompting_vs_rag(load_run(planted_dir))
    assert row["queries"] == pytest.approx(400)
    assert row["queries_ci_low"] is None and row["queries_ci_high"] is None
    assert row["meaning"].endswith("after 400 queries (95% CI uncertain: too few independent timings to know "
                                   "the per-query cost's noise)")


def test_probe_noise_gives_the_interval_when_batches_share_one_time(planted_dir):
    # The batch-1 probes (same queries, answered one at a time) carry the noise.
    store = RunStore(planted_dir)
    cells = store.read_cells()
    rng = __import__("numpy").random.default_rng(0)
    for c in cells:
        samples = (1000.0 * c["predict_s"] / 40 * rng.lognormal(0, 0.3, 32)).round(3).tolist()
        c["latency"] = {"default": {"n": 32, "samples_ms": samples, "query_ids": [f"p{i}" for i in range(32)],
                                    "latency_p50_ms": float(sorted(samples)[16]), "interleaved": True}}
        store.append_cell(c)
    frames = load_run(planted_dir)
    row = _prompting_vs_rag(frames)
    assert row["queries"] == pytest.approx(400)  # the point is still price / throughput
    assert row["queries_ci_low"] < 400 < row["queries_ci_high"]
    summary = summarize(frames).set_index("strategy")
    for name in ("prompting", "rag", "lora"):
        assert summary.loc[name, "cost_per_1k_ci_low"] < summary.loc[name, "cost_per_1k_usd"] \
            < summary.loc[name, "cost_per_1k_ci_high"]


def test_noisy_latencies_give_an_interval_around_the_point(planted_dir):
    # Spread the per-query times around the same mean: the point stays, an interval opens.
    # Re-appended rows replace the first ones (the last write of a (cell, example) wins).
    store = RunStore(planted_dir)
    # Both sides need known noise (one side's unknown noise leaves the volume uncertain).
    rows = [r for r in store.read_rows() if r["strategy"] in ("rag", "prompting")]
    for i, r in enumerate(rows):
        r["latency_s"] *= 0.2 if i % 2 else 1.8
    store.append_rows(rows)
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

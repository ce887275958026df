"""Latency judged like accuracy in the reports: p50/p95 intervals from the stored probe
samples, paired per-query tests, ties, the 2x slowdown that separates, and the flag on
an unmerged adapter that beats its base prompting cell."""
from __future__ import annotations

import numpy as np
import pytest

from bench.store import RunStore, cell_id
from reports import load_run, render_run, summarize
from reports.latency_pairs import find_latency, latency_comparisons
from reports.verdict import display_labels, verdict

MODEL = "tiny"
N, PROBES = 20, 32


def build(root, factors: dict[str, float], adapter: str | None = None, interleaved: bool = True):
    """Every strategy right on every example (accuracy ties); latency = a shared per-query
    base (long prompts are slow for all) x the strategy's factor x small noise."""
    store = RunStore(root)
    rng = np.random.default_rng(7)
    base = rng.lognormal(np.log(80.0), 0.4, PROBES)
    ids = [f"e{i}" for i in range(PROBES)]
    for strategy, factor in factors.items():
        cell = cell_id("t", strategy, MODEL, 0)
        store.append_rows([{"cell": cell, "task": "t", "strategy": strategy, "model": MODEL, "seed": 0,
                            "example_id": f"e{i}", "input": "q", "target": "a", "output": "a", "score": 1.0,
                            "latency_s": 0.05, "prompt_tokens": 30, "completion_tokens": 2} for i in range(N)])
        samples = (base * factor * rng.lognormal(0.0, 0.08, PROBES)).round(3).tolist()
        probe = {"default": {"n": PROBES, "samples_ms": samples, "query_ids": ids, "interleaved": interleaved,
                             "latency_p50_ms": float(np.median(samples)), "latency_p95_ms":
                             float(np.percentile(samples, 95)), "load": {"loadavg_1m_start": 1.5,
                                                                        "loadavg_1m_end": 3.5, "cpu_count": 2}}}
        info = {}
        if strategy == adapter:
            info = {"adapter_sha256": "ab", "trainable_params": 10}
            probe["merged"] = {"n": PROBES, "latency_p50_ms": 1.0}
        store.append_cell({"cell": cell, "task": "t", "strategy": strategy, "model": MODEL, "seed": 0,
                           "status": "ok", "metric": "accuracy", "n": N, "prepare_s": 1.0, "predict_s": 1.0 * factor,
                           "device": "cpu", "info": info, "latency": probe})
    store.write_json("manifest.json", {"name": "lat"})
    return load_run(root)


def _verdict(frames):
    summary = summarize(frames)
    return summary, verdict(summary, display_labels(summary), "accuracy", None, None, latency_comparisons(frames))


def test_identical_distributions_are_a_latency_tie(tmp_path):
    frames = build(tmp_path / "r", {"prompting": 1.0, "rag": 1.0})
    summary, text = _verdict(frames)
    pair = find_latency(latency_comparisons(frames), "t", MODEL, "prompting", "rag")
    assert pair["verdict"] == "tie" and pair["test"] == "paired" and pair["interleaved"]
    assert pair["ci_low"] <= 1.0 <= pair["ci_high"]
    assert "latency tie between all strategies" in text and "is fastest" not in text
    row = summary.set_index("strategy").loc["rag"]
    assert row["latency_p50_ci_low"] < row["latency_p50_ms"] < row["latency_p50_ci_high"]
    assert row["latency_p95_ci_low"] <= row["latency_p95_ms"] <= row["latency_p95_ci_high"]
    assert row["probe_load_max"] == pytest.approx(3.5) and row["latency_probe_n"] == PROBES


def test_a_planted_2x_slowdown_separates(tmp_path):
    frames = build(tmp_path / "r", {"prompting": 1.0, "rag": 2.0})
    _, text = _verdict(frames)
    pair = find_latency(latency_comparisons(frames), "t", MODEL, "prompting", "rag")
    assert pair["a"] == "rag" and pair["verdict"] == "prompting faster" and 1.7 < pair["ratio"] < 2.3
    assert pair["ci_low"] > 1.0
    assert "prompting is fastest (p50 " in text
    # cost per query follows throughput: 2x the predict time, and the intervals separate
    assert "prompting is cheapest per query" in text and "uncertain" not in text


def test_unpaired_probes_fall_back_to_the_p50_intervals(tmp_path):
    frames = build(tmp_path / "r", {"prompting": 1.0, "rag": 1.05}, interleaved=False)
    store = RunStore(tmp_path / "r")
    cells = store.read_cells()
    cells[1]["latency"]["default"]["query_ids"] = [f"other{i}" for i in range(PROBES)]  # no shared query
    store.append_cell(cells[1])
    frames = load_run(tmp_path / "r")
    pair = find_latency(latency_comparisons(frames), "t", MODEL, "prompting", "rag")
    assert pair["test"] == "unpaired" and pair["verdict"] == "tie" and not pair["interleaved"]


def test_unmerged_adapter_faster_than_its_base_is_flagged(tmp_path):
    frames = build(tmp_path / "r", {"prompting": 1.0, "lora": 0.2}, adapter="lora")
    summary, text = _verdict(frames)
    flag = summary.set_index("strategy").loc["lora", "latency_flag"]
    assert flag.startswith("implausible: lora serves an unmerged adapter") and "load average up to 3.5" in flag
    assert "lora measured fastest (p50 " in text and "but its latency is implausible" in text
    assert "lora is fastest" not in text
    assert not isinstance(summary.set_index("strategy").loc["prompting", "latency_flag"], str)
    # a slower adapter is what one expects: no flag
    frames = build(tmp_path / "r2", {"prompting": 1.0, "lora": 1.3}, adapter="lora")
    assert summarize(frames)["latency_flag"].isna().all()


def test_latency_comparisons_reach_csv_md_and_html(tmp_path):
    build(tmp_path / "r", {"prompting": 1.0, "rag": 2.0})
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    render_run(tmp_path / "r", console=Console(file=out, width=200))
    assert "latency rag vs prompting" in out.getvalue()
    assert "prompting faster" in (tmp_path / "r" / "latency_comparisons.csv").read_text()
    assert "rag vs prompting: p50" in (tmp_path / "r" / "summary.md").read_text()
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Latency comparisons" in html and "prompting is fastest" in html
    assert "latency_p50_ci_low" in (tmp_path / "r" / "summary.csv").read_text()

"""Throughput, price, cost per 1,000 queries and break-even in the summary and its files."""
import csv
import json
import math

import pytest

from bench.cost import HARDWARE_PRICES, PRICE_TABLE_VERSION
from bench.errors import BenchError
from bench.store import RunStore
from reports.costs import break_even_frame, fmt_queries, fmt_usd, hardware_key, price_table
from reports.frame import load_run
from reports.html import render_html
from reports.summary import summarize, write_summary

from conftest import PLANTED, PLANTED_N, PLANTED_TIMES, QA, SENTIMENT

H100 = HARDWARE_PRICES["h100"].usd_per_hour
CPU2 = HARDWARE_PRICES["cpu-2core"].usd_per_hour


def _row(summary, task, strategy):
    return summary[(summary["task"] == task) & (summary["strategy"] == strategy)].iloc[0]


def test_cost_columns_from_throughput_and_price(run_dir):
    """The synthetic run: 5 queries in 2.0 s on a CPU host of unknown size (2 cores)."""
    summary = summarize(load_run(run_dir))
    row = _row(summary, SENTIMENT, "rag")
    assert row["queries_per_s"] == pytest.approx(5 / 2.0)
    assert row["hardware"] == "cpu-2core" and row["price_usd_per_hour"] == CPU2
    assert row["cost_per_1k_usd"] == pytest.approx(1000 * CPU2 / 3600 / 2.5)
    assert row["prepare_cost_usd"] == pytest.approx(1.5 / 3600 * CPU2)
    # Two seeds: throughput pools queries and seconds; prepare time is the seeds' mean.
    prompting = _row(summary, SENTIMENT, "prompting")
    assert prompting["queries_per_s"] == pytest.approx(10 / 4.0)
    assert prompting["prepare_cost_usd"] == pytest.approx(2.0 / 3600 * CPU2)
    failed = _row(summary, QA, "lora")
    assert math.isnan(failed["cost_per_1k_usd"]) and math.isnan(failed["queries_per_s"])


def test_planted_costs_on_an_h100(planted_dir):
    summary = summarize(load_run(planted_dir))
    for strategy, (prepare_s, predict_s) in PLANTED_TIMES.items():
        row = _row(summary, PLANTED, strategy)
        assert row["hardware"] == "h100" and row["price_usd_per_hour"] == H100
        assert row["queries_per_s"] == pytest.approx(PLANTED_N / predict_s)
        assert row["cost_per_1k_usd"] == pytest.approx(1000 * H100 / 3600 * predict_s / PLANTED_N)
        assert row["prepare_cost_usd"] == pytest.approx(prepare_s / 3600 * H100)


def test_break_even_arithmetic_in_the_csv(planted_dir):
    write_summary(planted_dir)
    with open(planted_dir / "break_even.csv", newline="") as fh:
        rows = {(r["a"], r["b"]): r for r in csv.DictReader(fh)}
    assert set(rows) == {("prompting", "rag"), ("prompting", "lora"), ("rag", "lora")}  # b: higher fixed cost
    per_q = {s: H100 / 3600 * t / PLANTED_N for s, (_, t) in PLANTED_TIMES.items()}
    fixed = {s: p / 3600 * H100 for s, (p, _) in PLANTED_TIMES.items()}
    # fixed_b / (per_query_a - per_query_b): 0.299 / (0.000831 - 0.0000831) = 400.
    rag = rows[("prompting", "rag")]
    assert float(rag["queries"]) == pytest.approx(fixed["rag"] / (per_q["prompting"] - per_q["rag"]))
    assert float(rag["queries"]) == pytest.approx(400)
    # Every query of a planted cell shares one time: the noise is unknown, so no collapsed "400 to 400".
    assert rag["meaning"] == ("rag (higher fixed cost) becomes cheaper than prompting after 400 queries "
                              "(95% CI uncertain: too few independent timings to know the per-query cost's noise)")
    assert float(rows[("prompting", "lora")]["queries"]) == pytest.approx(7200)
    assert float(rows[("prompting", "lora")]["cost_per_1k_a_usd"]) == pytest.approx(1000 * per_q["prompting"])
    never = rows[("rag", "lora")]  # lora costs more up front and per query
    assert never["queries"] == "" and never["meaning"].startswith("never: rag is cheaper at every volume")


def test_break_even_equal_and_unknown(run_dir):
    summary = summarize(load_run(run_dir))
    breaks = break_even_frame(summary)
    same = breaks[(breaks["task"] == QA)].iloc[0]  # same prepare time and throughput
    assert same["queries"] == 0.0 and same["meaning"] == "same cost at every volume"
    summary.loc[summary["strategy"] == "rag", "cost_per_1k_usd"] = float("nan")
    unknown = break_even_frame(summary)
    assert unknown.loc[unknown["b"].eq("rag") | unknown["a"].eq("rag"), "meaning"].str.startswith("unknown").all()


def test_hardware_key_from_manifest():
    gpu_host = {"hardware": {"gpu": "NVIDIA H100 80GB HBM3", "cpu_count": 16}}
    assert hardware_key(gpu_host, "cuda") == "h100"
    assert hardware_key(gpu_host, "cpu") == "cpu-16core"  # a CPU cell is priced as CPU
    assert hardware_key({"hardware": {"gpu": "Some Future GPU"}}, "cuda") is None  # unknown, not cheap
    assert hardware_key({"hardware": {"cpu_count": 8}}, "cpu") == "cpu-8core"
    assert hardware_key({}, "cuda") is None and hardware_key({}, None) == "cpu-2core"
    assert hardware_key({"cost": {"hardware": "a10g"}}, "cpu") == "a10g"


def test_unknown_gpu_gives_unknown_cost(planted_dir):
    RunStore(planted_dir).write_json("manifest.json", {"hardware": {"gpu": "Some Future GPU"}})
    summary = summarize(load_run(planted_dir))
    assert summary["hardware"].isna().all() and summary["cost_per_1k_usd"].isna().all()
    assert break_even_frame(summary)["meaning"].str.startswith("unknown").all()


def test_pinned_price_and_volumes(planted_dir):
    RunStore(planted_dir).write_json("manifest.json", {"hardware": {"gpu": "NVIDIA H100"},
                                                       "cost": {"usd_per_hour": 3.6, "monthly_volumes": [500]}})
    frames = load_run(planted_dir)
    summary = summarize(frames)
    assert _row(summary, PLANTED, "rag")["cost_per_1k_usd"] == pytest.approx(1000 * 3.6 / 3600 / 10)
    prices = price_table(summary, frames.manifest)
    assert prices["monthly_volumes"] == [500] and not prices["hardware"]["h100"]["default_list_price"]
    RunStore(planted_dir).write_json("manifest.json", {"cost": {"hardware": "h1000"}})
    with pytest.raises(BenchError, match="h100"):
        summarize(load_run(planted_dir))


def test_price_table_in_json_and_html(planted_dir):
    write_summary(planted_dir)
    prices = json.loads((planted_dir / "summary.json").read_text())["price_table"]
    assert prices["version"] == PRICE_TABLE_VERSION and prices["monthly_volumes"] == [10_000, 100_000, 1_000_000]
    h100 = prices["hardware"]["h100"]
    assert h100["usd_per_hour"] == H100 and h100["default_list_price"] is True
    assert h100["source"] == HARDWARE_PRICES["h100"].source and h100["as_of"] == HARDWARE_PRICES["h100"].as_of
    html = render_html(planted_dir).read_text()
    assert f"Price table {PRICE_TABLE_VERSION}" in html and "Default on-demand list prices" in html


def test_html_costs_and_verdict(planted_dir):
    html = render_html(planted_dir).read_text()
    assert ("lora and rag tie on accuracy (1.00 [1.00, 1.00] vs 0.95 [0.88, 1.00]; difference +0.05 "
            "[0.00, 0.12], McNemar p=0.500; n=40 detects a difference of 0.10 (80% power); this gap needs n≈153); "
            "rag has the lowest p50 latency (100 ms; uncertain: no batch-1 "
            "probes, so no interval); rag is cheapest per query ($0.0831 per 1,000, 5.0x less than lora; "
            "uncertain: no timing noise was measured); break-even: never: rag is cheaper at every volume") in html
    assert "rag (higher fixed cost) becomes cheaper than prompting after 400 queries" in html
    assert "<td>lora better</td>" in html and "<td>tie</td>" in html
    # First-month totals: rag = 0.299 + volume x 0.0000831 -> $1.13, $8.60, $83.35.
    assert "1,000,000 queries" in html
    assert '<td>rag</td><td class="num">$1.13</td><td class="num">$8.60</td><td class="num">$83.35</td>' in html
    assert "<th class=\"num\">macro-F1</th>" in html


def test_formatting():
    assert fmt_usd(float("nan")) == "–" and fmt_usd(0) == "$0" and fmt_usd(1234.5) == "$1,234"
    assert fmt_usd(12.345) == "$12.35" and fmt_usd(0.0099166) == "$0.00992" and fmt_usd(4.958e-5) == "$0.0000496"
    assert fmt_queries(4000.0000001) == "4,000" and fmt_queries(4000.2) == "4,001"


def test_each_cell_is_priced_from_the_hardware_it_ran_on(planted_dir):
    """On a cluster the driver is not where cells run: the manifest's per-cell
    hardware (an A10G node for LoRA) wins over the driver's (an H100 host)."""
    cells = {f"{PLANTED}|lora|{m}|seed0": {"hardware": {"gpu": "NVIDIA A10G", "gpu_count": 1, "cpu_count": 8}}
             for m in {r["model"] for r in RunStore(planted_dir).read_rows()}}
    manifest = json.loads((planted_dir / "manifest.json").read_text())
    RunStore(planted_dir).write_json("manifest.json", {**manifest, "cells": cells})
    summary = summarize(load_run(planted_dir))
    assert _row(summary, PLANTED, "lora")["hardware"] == "a10g"
    assert _row(summary, PLANTED, "rag")["hardware"] == "h100"  # no cell facts: the manifest's hardware
    assert hardware_key({"hardware": {"gpu": "NVIDIA H100"}}, "cuda", {"gpu": "NVIDIA A10G"}) == "a10g"

"""Known-answer tests for bench.cost."""
import math

import numpy as np
import pytest

from bench import cost
from bench.cost import (API_PRICES, HARDWARE_PRICES, PRICE_TABLE_VERSION, api_cost_per_1k, break_even,
                        break_even_interval, cost_per_1k_queries, detect_hardware_key, prepare_cost,
                        price_per_hour, throughput, total_cost)


def test_tables_are_documented():
    assert PRICE_TABLE_VERSION
    for key in ("h100", "a100-80gb", "l4", "cpu-2core"):
        assert key in HARDWARE_PRICES
    for table in (HARDWARE_PRICES, API_PRICES):
        for entry in table.values():
            assert entry.source and entry.as_of == "2026-11"
    assert all(p.usd_per_hour > 0 for p in HARDWARE_PRICES.values())
    assert all(p.illustrative for p in API_PRICES.values())


def test_price_lookup_and_overrides():
    assert price_per_hour("h100") == HARDWARE_PRICES["h100"].usd_per_hour
    assert price_per_hour("h100", overrides={"h100": 4.5}) == 4.5
    assert price_per_hour("l4", overrides={"h100": 4.5}) == HARDWARE_PRICES["l4"].usd_per_hour
    assert math.isnan(price_per_hour(None))
    with pytest.raises(KeyError, match="h100"):
        price_per_hour("h10O")


@pytest.mark.parametrize("name, key", [
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H100 PCIe", "h100"), ("NVIDIA H200", "h200"),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb"), ("NVIDIA A100 80GB PCIe", "a100-80gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-40gb"), ("NVIDIA A10G", "a10g"), ("NVIDIA L4", "l4"),
    ("Tesla T4", "t4"), ("NVIDIA L40S", None), ("NVIDIA GH200 480GB", None), ("cuda", None),
])
def test_detect_gpu(name, key):
    assert detect_hardware_key(name) == key


def test_detect_cpu_fallback():
    assert detect_hardware_key(None) == "cpu-2core"
    assert detect_hardware_key("cpu", 2) == "cpu-2core"
    assert detect_hardware_key("", 4) == "cpu-8core"
    assert detect_hardware_key(None, 16) == "cpu-16core"
    assert detect_hardware_key(None, 64) == "cpu-16core"


def test_prepare_and_serving_cost():
    assert prepare_cost(1800, 3.0) == pytest.approx(1.5)
    assert math.isnan(prepare_cost(math.nan, 3.0))
    with pytest.raises(ValueError):
        prepare_cost(-1, 3.0)
    # 3.6 USD/h = 0.001 USD/s; 2 queries/s -> 0.0005 USD/query -> 0.5 per 1k.
    assert cost_per_1k_queries(2.0, 3.6) == pytest.approx(0.5)
    assert cost_per_1k_queries(0.0, 3.6) == math.inf
    assert cost_per_1k_queries(0.0, 0.0) == 0.0
    assert math.isnan(cost_per_1k_queries(math.nan, 3.6))
    assert math.isnan(cost_per_1k_queries(2.0, math.nan))
    with pytest.raises(ValueError):
        cost_per_1k_queries(-1.0, 3.6)
    assert throughput(100, 50.0) == 2.0
    assert math.isnan(throughput(100, 0.0))


def test_api_cost():
    price = cost.ApiPrice(1.0, 4.0, "test", "2026-11")
    # 500 prompt + 100 completion tokens: (500*1 + 100*4) / 1e6 per query -> 0.9 per 1k.
    assert api_cost_per_1k(500, 100, price) == pytest.approx(0.9)
    mini = API_PRICES["gpt-4o-mini"]
    assert api_cost_per_1k(1000, 0, "gpt-4o-mini") == pytest.approx(mini.input_per_m)
    with pytest.raises(KeyError):
        api_cost_per_1k(1, 1, "gpt-5-imaginary")


def test_break_even_arithmetic():
    assert break_even(10.0, 0.001, 0.0, 0.003) == pytest.approx(5000.0)
    assert break_even(0.0, 0.003, 10.0, 0.001) == pytest.approx(5000.0)  # order does not matter
    assert break_even(10.0, 0.003, 0.0, 0.003) is None  # per-query not lower: never
    assert break_even(10.0, 0.004, 0.0, 0.003) is None
    assert break_even(5.0, 0.001, 5.0, 0.003) == 0.0  # cheaper from the start
    assert math.isnan(break_even(math.nan, 0.001, 0.0, 0.003))
    # At the break-even volume the totals meet.
    v = break_even(10.0, 0.001, 0.0, 0.003)
    assert total_cost(10.0, 0.001, [v]) == pytest.approx(total_cost(0.0, 0.003, [v]))


def test_break_even_interval():
    rng = np.random.default_rng(0)
    qa = rng.normal(0.001, 0.0001, size=2000)
    point, low, high = break_even_interval(10.0, qa, 0.0, 0.003)
    assert point == pytest.approx(10.0 / (0.003 - qa.mean()))
    assert low < point < high
    assert 4000 < low and high < 6500
    # Samples where per-query costs overlap: some never break even, so high is inf.
    qa_wide = rng.normal(0.0025, 0.0005, size=2000)
    _, low, high = break_even_interval(10.0, qa_wide, 0.0, 0.003)
    assert math.isfinite(low) and high == math.inf
    # Never, even at the point estimate.
    assert break_even_interval(10.0, [0.004, 0.005], 0.0, 0.003)[0] == math.inf


def test_total_cost():
    assert total_cost(10.0, 0.002, [0, 1000, 1_000_000]) == pytest.approx([10.0, 12.0, 2010.0])
    assert total_cost(0.0, 0.1, []) == []


def test_per_query_cost_samples():
    samples = cost.per_query_cost_samples([0.5, 0.5, 0.5], price_per_hour=3.6, n_resamples=10)
    assert samples.shape == (10,) and np.allclose(samples, 0.0005)

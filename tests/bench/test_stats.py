"""Known-answer tests for bench.stats."""
import math
import time

import numpy as np
import pytest

from bench import stats
from bench.stats import (bootstrap_ci, compare_pair, macro_f1, mcnemar_exact, paired_bootstrap_diff,
                         percentiles)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(1).normal(5.0, 1.0, size=50)
    first = bootstrap_ci(x, seed=3)
    assert first == bootstrap_ci(x, seed=3)
    assert first != bootstrap_ci(x, seed=4)
    mean, low, high = first
    assert mean == pytest.approx(x.mean())
    assert low < mean < high
    # Roughly mean +- 1.96 * sd / sqrt(n) for a normal sample.
    assert high - low == pytest.approx(2 * 1.96 * x.std(ddof=1) / math.sqrt(50), rel=0.2)


def test_bootstrap_ci_edge_sizes():
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert all(math.isnan(v) for v in bootstrap_ci([math.nan]))
    assert bootstrap_ci([0.4]) == (0.4, 0.4, 0.4)
    assert bootstrap_ci([1.0, math.nan, 1.0]) == (1.0, 1.0, 1.0)  # nan dropped
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], confidence=1.5)


def test_bootstrap_coverage_on_bernoulli():
    """200 repetitions of n=100 Bernoulli(0.7): the 95% interval covers 0.7 in 90-99% of them."""
    start = time.perf_counter()
    rng = np.random.default_rng(123)
    covered = 0
    for rep in range(200):
        _, low, high = bootstrap_ci(rng.binomial(1, 0.7, size=100), n_resamples=1000, seed=rep)
        covered += low <= 0.7 <= high
    assert 180 <= covered <= 198
    assert time.perf_counter() - start < 5.0


def test_bootstrap_means_chunks_large_inputs(monkeypatch):
    monkeypatch.setattr(stats, "_MAX_CELLS", 1000)  # forces many small chunks
    x = np.arange(300, dtype=float)
    means = stats.bootstrap_means(x, n_resamples=50, seed=0)
    assert means.shape == (50,)
    assert abs(means.mean() - x.mean()) < 10


def test_paired_diff_of_identical_vectors_is_exactly_zero():
    a = np.random.default_rng(0).random(40)
    assert paired_bootstrap_diff(a, a.copy()) == (0.0, 0.0, 0.0)


def test_paired_diff_sign_and_pairing():
    rng = np.random.default_rng(2)
    base = rng.random(200)
    diff, low, high = paired_bootstrap_diff(base + 0.1, base)
    # Every pair differs by exactly 0.1, so the paired interval is (almost) zero width
    # although the scores themselves vary a lot.
    assert diff == pytest.approx(0.1)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1, 0], [1, 0, 1])


def test_mcnemar_hand_computed():
    # 1 example a wrong / b right, 9 the reverse, 5 both right, 5 both wrong.
    a = [0] * 1 + [1] * 9 + [1] * 5 + [0] * 5
    b = [1] * 1 + [0] * 9 + [1] * 5 + [0] * 5
    b01, b10, p = mcnemar_exact(a, b)
    assert (b01, b10) == (1, 9)
    assert p == pytest.approx(2 * (1 + 10) / 1024) == 0.021484375
    assert mcnemar_exact(b, a) == (9, 1, pytest.approx(0.021484375))


def test_mcnemar_without_discordant_pairs_and_bad_input():
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]) == (0, 0, 1.0)
    assert mcnemar_exact([True, False], [True, False])[2] == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact([0.5, 1], [1, 1])


def test_macro_f1_hand_computed():
    targets = ["a", "a", "b", "b", "c"]
    outputs = ["a", "b", "b", "b", "a"]
    # a: tp1 fp1 fn1 -> 2/4 = 0.5; b: tp2 fp1 fn0 -> 4/5 = 0.8; c: tp0 fn1 -> 0.
    assert macro_f1(targets, outputs, ["a", "b", "c"]) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1(targets, outputs) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # A listed label absent from both sides scores 0 (sklearn zero_division=0).
    assert macro_f1(targets, outputs, ["a", "b", "c", "d"]) == pytest.approx(1.3 / 4)
    # An output outside the labels is a miss, not a label of its own.
    assert macro_f1(["a", "b"], ["a", "junk"], ["a", "b"]) == pytest.approx((1.0 + 0.0) / 2)
    assert macro_f1(["x"], ["x"]) == 1.0
    assert math.isnan(macro_f1([], []))


def test_macro_f1_matches_sklearn_when_available():
    from sklearn import metrics  # a dependency of sentence-transformers
    rng = np.random.default_rng(5)
    labels = ["pos", "neg", "neu", "other"]
    t = rng.choice(labels[:3], size=60).tolist()
    o = rng.choice(labels[:3] + ["bad"], size=60).tolist()
    expected = metrics.f1_score(t, o, labels=labels, average="macro", zero_division=0)
    assert macro_f1(t, o, labels) == pytest.approx(expected)


def test_compare_pair_binary_verdicts():
    a = [1] * 40 + [0] * 10 + [1] * 30 + [0] * 20
    b = [0] * 40 + [1] * 10 + [1] * 30 + [0] * 20
    out = compare_pair(a, b, binary=True, seed=0)
    assert out["verdict"] == "a better" and out["test"] == "mcnemar"
    assert out["diff"] == pytest.approx(0.3) and out["ci"][0] > 0
    assert (out["b01"], out["b10"]) == (10, 40) and out["p_value"] < 0.001
    assert compare_pair(b, a, binary=True)["verdict"] == "b better"
    same = compare_pair(a, a, binary=True)
    assert same["verdict"] == "tie" and same["p_value"] == 1.0


def test_compare_pair_continuous_and_empty():
    rng = np.random.default_rng(0)
    base = rng.random(100)
    out = compare_pair(base, base + 0.05, binary=False)
    assert out["verdict"] == "b better" and out["p_value"] is None and out["test"] == "bootstrap"
    # For latency-like scores lower wins.
    assert compare_pair(base, base + 0.05, binary=False, higher_is_better=False)["verdict"] == "a better"
    noisy = compare_pair(base, rng.random(100), binary=False)
    assert noisy["verdict"] == "tie" and noisy["ci"][0] <= 0 <= noisy["ci"][1]
    empty = compare_pair([], [], binary=True)
    assert empty["verdict"] == "tie" and empty["n"] == 0 and math.isnan(empty["diff"])


def test_percentiles_in_ms():
    out = percentiles([0.001 * i for i in range(1, 101)])
    assert list(out) == ["p50_ms", "p95_ms", "p99_ms"]
    assert out["p50_ms"] == pytest.approx(50.5)
    assert out["p95_ms"] == pytest.approx(95.05)
    assert out["p99_ms"] == pytest.approx(99.01)
    assert percentiles([0.2, math.nan], (50, 99.9)) == {"p50_ms": pytest.approx(200.0),
                                                       "p99.9_ms": pytest.approx(200.0)}
    assert all(math.isnan(v) for v in percentiles([]).values())

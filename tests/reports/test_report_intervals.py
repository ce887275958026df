"""Score intervals, macro-F1 and paired comparisons, against known answers."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from bench.stats import bootstrap_ci
from reports.compare_pairs import COMPARISON_COLUMNS, compare_strategies, describe, find
from reports.frame import load_run
from reports.intervals import N_RESAMPLES, as_label
from reports.summary import summarize

from conftest import MODEL, PLAN, PLANTED, PLANTED_N, QA, SENTIMENT


def _row(summary, task, strategy):
    return summary[(summary["task"] == task) & (summary["strategy"] == strategy)].iloc[0]


def test_interval_contains_the_mean_and_stays_in_range(run_dir):
    summary = summarize(load_run(run_dir))
    ok = summary[summary["status"] == "ok"]
    assert ok["score_ci_low"].notna().all() and N_RESAMPLES >= 1000
    assert (ok["score_ci_low"] <= ok["score"] + 1e-12).all() and (ok["score"] <= ok["score_ci_high"] + 1e-12).all()
    assert (ok["score_ci_low"] >= 0).all() and (ok["score_ci_high"] <= 1).all()
    lora = _row(summary, SENTIMENT, "lora")  # all correct: no spread to resample
    assert lora["score_ci_low"] == lora["score_ci_high"] == 1.0
    failed = _row(summary, QA, "lora")
    assert math.isnan(failed["score_ci_low"]) and math.isnan(failed["score_ci_high"])


def test_seeds_are_averaged_per_example_before_resampling(run_dir):
    """Two seeds of five examples are five examples, not ten independent rows."""
    row = _row(summarize(load_run(run_dir)), SENTIMENT, "prompting")
    seed0, seed1 = (np.array([p[0] for p in PLAN[(SENTIMENT, "prompting", s)]], float) for s in (0, 1))
    per_example = (seed0 + seed1) / 2
    mean, low, high = bootstrap_ci(per_example, n_resamples=N_RESAMPLES, seed=0)
    assert (row["score_ci_low"], row["score_ci_high"]) == pytest.approx((low, high))
    assert mean == pytest.approx(row["score"])


def test_interval_is_reproducible(planted_dir):
    a, b = summarize(load_run(planted_dir)), summarize(load_run(planted_dir))
    pd.testing.assert_series_equal(a["score_ci_low"], b["score_ci_low"])


def test_macro_f1_on_planted_labels(planted_dir):
    summary = summarize(load_run(planted_dir))
    assert _row(summary, PLANTED, "lora")["macro_f1"] == pytest.approx(1.0)
    # prompting: 5 yes + 5 no right, 15 + 15 flipped: F1 = 2*5 / (2*5 + 15 + 15) per label.
    assert _row(summary, PLANTED, "prompting")["macro_f1"] == pytest.approx(0.25)
    # rag: "maybe" is off-label, so it is a miss for "no" and not a third label.
    assert _row(summary, PLANTED, "rag")["macro_f1"] == pytest.approx((38 / 39 + 38 / 40) / 2)


def test_macro_f1_only_for_classification(run_dir):
    summary = summarize(load_run(run_dir))
    assert summary[summary["task"] == QA]["macro_f1"].isna().all()
    assert _row(summary, QA, "rag")["exact_match"] == pytest.approx(2 / 3)  # QA keeps EM and F1


def test_as_label():
    assert as_label([" yes ", "y"]) == "yes" and as_label(None) == "" and as_label(float("nan")) == ""


def test_planted_clear_difference_and_tie(planted_dir):
    comp = compare_strategies(load_run(planted_dir))
    assert list(comp.columns) == COMPARISON_COLUMNS and len(comp) == 3
    clear = find(comp, PLANTED, MODEL, "prompting", "lora")
    assert (clear["a"], clear["b"], clear["n"], clear["test"]) == ("lora", "prompting", PLANTED_N, "mcnemar")
    assert clear["diff"] == pytest.approx(0.75) and clear["ci_low"] > 0 and clear["ci_low"] <= 0.75 <= clear["ci_high"]
    # 30 discordant pairs, all favouring lora.
    assert clear["p_value"] == pytest.approx(binomtest(0, 30, 0.5).pvalue) and clear["verdict"] == "lora better"
    tie = find(comp, PLANTED, MODEL, "lora", "rag")
    assert tie["diff"] == pytest.approx(0.05) and tie["ci_low"] <= 0 <= tie["ci_high"]
    assert tie["p_value"] == pytest.approx(0.5) and tie["verdict"] == "tie"  # 2 discordant pairs: 2 * 0.5**2
    assert describe(tie) == ("lora vs rag: +0.05 [0.00, 0.12], McNemar p=0.500 -> tie (n=40; n=40 detects a "
                             "difference of 0.10 (80% power); this gap needs n≈153)")


def test_rag_vs_prompting_mcnemar_by_hand(planted_dir):
    c = find(compare_strategies(load_run(planted_dir)), PLANTED, MODEL, "rag", "prompting")
    # rag right / prompting wrong on p10-p39 (30); the reverse on p0, p1 (2).
    assert c["p_value"] == pytest.approx(binomtest(2, 32, 0.5).pvalue)
    assert c["verdict"] == "rag better" and c["diff"] == pytest.approx(0.70)


def test_pairs_only_on_common_seeds(run_dir):
    """prompting has seeds 0 and 1, rag only 0: they are compared on seed 0."""
    c = find(compare_strategies(load_run(run_dir)), SENTIMENT, MODEL, "rag", "prompting")
    assert c["n_seeds"] == 1 and c["n"] == 5
    assert c["mean_b"] == pytest.approx(np.mean([p[0] for p in PLAN[(SENTIMENT, "prompting", 0)]]))
    assert c["diff"] == pytest.approx(0.8 - 0.6) and c["verdict"] == "tie"


def test_failed_cells_are_not_compared(run_dir):
    comp = compare_strategies(load_run(run_dir))
    assert "lora" not in set(comp.loc[comp["task"] == QA, "a"]) | set(comp.loc[comp["task"] == QA, "b"])
    assert len(comp) == 3 + 1  # sentiment: 3 pairs; qa: rag vs prompting only


def test_non_binary_scores_use_the_bootstrap(planted_dir):
    frames = load_run(planted_dir)
    frames.rows.loc[frames.rows["strategy"] == "rag", "score"] *= 0.5  # partial credit
    c = find(compare_strategies(frames), PLANTED, MODEL, "rag", "prompting")
    assert c["test"] == "bootstrap" and pd.isna(c["p_value"]) and "paired bootstrap" in describe(c)

"""Score uncertainty per summary row, and macro-F1 per cell for classification tasks.

The interval is a 95% percentile bootstrap (`bench.stats.bootstrap_ci`) over test
examples. With several seeds each example's score is first averaged over the seeds
that finished, then the examples are resampled: the example is the unit that was
sampled from the world, so pooling k seeds as k x n independent rows would shrink the
interval by about sqrt(k) without any new evidence. Spread across seeds is reported
separately as `score_std`. The resampling seed is fixed, so a report rebuilt from the
same rows prints the same interval.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.stats import bootstrap_ci, macro_f1
from reports.frame import KEYS

N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
INTERVAL_COLUMNS = ["score_ci_low", "score_ci_high"]
# Tasks whose outputs are labels, so macro-F1 over the label set means something.
CLASSIFICATION_METRICS = {"accuracy"}


def example_scores(rows: pd.DataFrame) -> pd.Series:
    """Per-example score averaged over the seeds present, indexed by example id."""
    return rows.groupby("example_id", sort=False)["score"].mean()


def score_intervals(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, strategy, model) in `rows` (finished cells only) with its CI."""
    out: list[dict[str, Any]] = []
    for keys, group in rows.groupby(KEYS, sort=False, dropna=False):
        _, low, high = bootstrap_ci(example_scores(group).to_numpy(), n_resamples=N_RESAMPLES,
                                    confidence=CONFIDENCE, seed=BOOTSTRAP_SEED)
        out.append({**dict(zip(KEYS, keys)), "score_ci_low": low, "score_ci_high": high})
    return pd.DataFrame(out, columns=KEYS + INTERVAL_COLUMNS)


def as_label(value: Any) -> str:
    """A stored target or output as a label string; a list of accepted answers counts
    as its first one, and surrounding space is dropped as the accuracy metric does."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def macro_f1_by_cell(rows: pd.DataFrame, metric_by_task: dict[str, str]) -> dict[str, float]:
    """Macro-F1 per cell of every classification task.

    The label set is the targets seen in the task's rows, shared by every strategy:
    an off-label output (a malformed answer) then counts as a miss, not as an extra
    label whose zero F1 would drag one strategy's mean down by a different amount.
    """
    out: dict[str, float] = {}
    for task, group in rows.groupby("task", sort=False):
        if metric_by_task.get(task) not in CLASSIFICATION_METRICS:
            continue
        labels = sorted({lab for lab in map(as_label, group["target"]) if lab})
        if not labels:
            continue
        for cell, rows_of_cell in group.groupby("cell", sort=False):
            out[cell] = macro_f1([as_label(t) for t in rows_of_cell["target"]],
                                 [as_label(o) for o in rows_of_cell["output"]], labels)
    return out

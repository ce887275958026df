"""Trivial baselines: what a strategy must beat before its score means anything.

Classification: always answering the most frequent train label ("majority-class") and
answering a label drawn uniformly at random ("uniform-random", its expected score and
expected macro-F1). QA: the empty answer ("empty-answer") and always answering the most
frequent train answer ("top-train-answer"). Each is scored on the very test examples
the strategies answered (the union of a task x model's finished rows), so its row sits
beside theirs in every table, and the constant predictors' per-example scores feed the
same paired test the strategies get (`reports.compare_pairs`).

The train label counts and the top train answer come from the manifest's task entry
(`train_label_counts`, `train_top_answer`), written by the runner: reports read only
the run folder. A run without them (older runs) simply shows no baselines.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics import score_example
from bench.stats import bootstrap_ci, macro_f1
from reports.frame import BASELINE, RunFrames, ok_rows
from reports.intervals import BOOTSTRAP_SEED, CONFIDENCE, N_RESAMPLES, as_label

MAJORITY, UNIFORM, EMPTY, TOP_ANSWER = "majority-class", "uniform-random", "empty-answer", "top-train-answer"
# Constant predictors: their per-example outcomes can be paired with a strategy's.
PREDICTORS = (MAJORITY, EMPTY, TOP_ANSWER)


def task_entry(frames: RunFrames, task: str) -> dict[str, Any]:
    tasks = frames.manifest.get("tasks")
    entry = tasks.get(task) if isinstance(tasks, dict) else None
    return entry if isinstance(entry, dict) else {}


def majority_label(entry: dict[str, Any]) -> str | None:
    counts = entry.get("train_label_counts")
    if not isinstance(counts, dict) or not counts:
        return None
    # Ties go to the first label in the declared order, so the choice is reproducible.
    return str(max(counts, key=lambda lab: (counts[lab], -list(counts).index(lab))))


def _answers(row: dict[str, Any]) -> list[str]:
    given = row.get("answers")
    if isinstance(given, (list, tuple)) and given:
        return [str(a) for a in given]
    target = row.get("target")
    if isinstance(target, (list, tuple)):
        return [str(a) for a in target] or [""]
    return [as_label(target)]


def _examples(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per example id answered in `rows` (the first strategy's copy)."""
    return rows.drop_duplicates("example_id", keep="first")


def per_example(frames: RunFrames, task: str, rows: pd.DataFrame, metric: str | None) -> dict[str, pd.Series]:
    """Baseline name -> per-example score, indexed by example id, on the examples of
    `rows`. Uniform-random holds the expected score (1/labels) of each example."""
    entry = task_entry(frames, task)
    examples = _examples(rows)
    if examples.empty:
        return {}
    ids = examples["example_id"].tolist()
    out: dict[str, pd.Series] = {}
    majority = majority_label(entry)
    if majority is not None:
        labels = [str(x) for x in entry.get("labels") or entry["train_label_counts"]]
        out[MAJORITY] = pd.Series([float(as_label(t) == majority) for t in examples["target"]], index=ids)
        out[UNIFORM] = pd.Series([1.0 / len(labels)] * len(ids), index=ids)
        return out
    top = entry.get("train_top_answer")
    if isinstance(top, str) and metric in ("exact_match", "f1"):
        records = examples.to_dict(orient="records")
        out[EMPTY] = pd.Series([score_example(metric, "", _answers(r))["score"] for r in records], index=ids)
        out[TOP_ANSWER] = pd.Series([score_example(metric, top, _answers(r))["score"] for r in records], index=ids)
    return out


def _uniform_macro_f1(targets: list[str], labels: list[str], k: int) -> float:
    """Expected macro-F1 of uniform guessing over k labels: per label with test share p,
    E[tp] = np/k, E[fp] = n(1-p)/k, E[fn] = np(1-1/k), so F1 ~ 2p / (kp + 1)
    (the ratio of expectations, exact as n grows)."""
    n = len(targets)
    if not n or not labels:
        return math.nan
    shares = [sum(t == lab for t in targets) / n for lab in labels]
    return float(np.mean([2 * p / (k * p + 1) for p in shares]))


def baseline_rows(frames: RunFrames, metric_by_task: dict[str, str]) -> pd.DataFrame:
    """Summary-shaped rows (status "baseline") for every task x model with finished rows."""
    rows = ok_rows(frames)
    out: list[dict[str, Any]] = []
    for (task, model), group in rows.groupby(["task", "model"], sort=False):
        metric = metric_by_task.get(task)
        scores = per_example(frames, task, group, metric)
        if not scores:
            continue
        targets = [as_label(t) for t in _examples(group)["target"]]
        entry = task_entry(frames, task)
        seen = sorted({t for t in map(as_label, group["target"]) if t})
        for name, values in scores.items():
            row: dict[str, Any] = {"task": task, "strategy": name, "model": model, "metric": metric,
                                   "n_seeds": 0, "n": len(values), "score": float(values.mean()),
                                   "status": BASELINE, "latency_mode": None}
            if name in PREDICTORS:
                _, row["score_ci_low"], row["score_ci_high"] = bootstrap_ci(
                    values.to_numpy(), n_resamples=N_RESAMPLES, confidence=CONFIDENCE, seed=BOOTSTRAP_SEED)
            if name == MAJORITY:
                row["macro_f1"] = macro_f1(targets, [majority_label(entry)] * len(targets), seen)
            elif name == UNIFORM:
                k = len(entry.get("labels") or entry.get("train_label_counts") or seen)
                row["macro_f1"] = _uniform_macro_f1(targets, seen, k)
            out.append(row)
    return pd.DataFrame(out)


def with_baselines(summary: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """The summary with each task x model's baseline rows right after its strategies."""
    if baselines.empty:
        return summary
    parts = []
    for task in dict.fromkeys(summary["task"]):
        parts.append(summary[summary["task"] == task])
        parts.append(baselines[baselines["task"] == task])
    parts.append(baselines[~baselines["task"].isin(set(summary["task"]))])
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True).reindex(columns=summary.columns)


def is_baseline(rows: pd.DataFrame) -> pd.Series:
    return rows["status"].astype(str) == BASELINE if "status" in rows else pd.Series(False, index=rows.index)



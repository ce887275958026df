"""Paired comparisons between strategies on the same task, model, seeds and examples.

Two strategies are compared only where both answered the same example under the same
seed: rows are matched on (seed, example_id), so a strategy run with more seeds or a
larger `--limit` is not judged on examples the other never saw. Matched pairs are then
averaged per example over the common seeds (the example is the resampling unit, as in
`reports.intervals`). The test is `bench.stats.compare_pair`: McNemar's exact test
plus a paired bootstrap interval when every per-example value is 0/1 (accuracy or
exact match on one seed, or seeds that agree), the paired bootstrap alone otherwise.

`a` is the side with the higher mean on the matched examples, so `diff` is never
negative and the verdict reads "<a> better" or "tie".

Sample size: `mde` is the smallest true difference the comparison's n detects with 80%
power at alpha 0.05, and `n_needed` the examples that would detect the observed gap,
both from `bench.stats.min_detectable_diff` / `n_to_detect`: the paired-t approximation
(normal quantiles) with the observed standard deviation of the per-example
differences. For 0/1 outcomes that variance is p_disc - diff^2 (p_disc: the share of
discordant pairs), the quantity McNemar's test works with. Two strategies that never
disagree have no spread to scale: mde is then unknown and n_needed infinite.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.stats import compare_pair, min_detectable_diff, n_to_detect
from reports.frame import RunFrames, ok_rows
from reports.intervals import BOOTSTRAP_SEED, CONFIDENCE, N_RESAMPLES
from reports.trivial import PREDICTORS, per_example

# Metrics whose per-example values are 0/1, so McNemar's test applies.
BINARY_METRICS = {"accuracy", "exact_match"}
ALPHA = 0.05
COMPARISON_COLUMNS = ["task", "model", "a", "b", "n_seeds", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high",
                      "p_value", "test", "verdict", "sd_diff", "mde", "n_needed"]
POWER = 0.8


def metric_by_task(frames: RunFrames) -> dict[str, str]:
    cells = frames.cells
    if cells.empty or "metric" not in cells:
        return {}
    return {t: m for t, m in zip(cells["task"], cells["metric"]) if isinstance(m, str)}


def _paired(rows: pd.DataFrame, a: str, b: str) -> tuple[pd.DataFrame, int]:
    """Per-example mean scores of a and b over their matched (seed, example) pairs."""
    left = rows[rows["strategy"] == a][["seed", "example_id", "score"]]
    right = rows[rows["strategy"] == b][["seed", "example_id", "score"]]
    both = left.merge(right, on=["seed", "example_id"], suffixes=("_a", "_b")).dropna()
    per_example = both.groupby("example_id", sort=False)[["score_a", "score_b"]].mean()
    return per_example, int(both["seed"].nunique())


def _is_binary(metric: str | None, values: np.ndarray) -> bool:
    return metric in BINARY_METRICS and bool(np.isin(values, (0.0, 1.0)).all())


def compare_two(rows: pd.DataFrame, a: str, b: str, metric: str | None) -> dict[str, Any] | None:
    """The comparison of strategies a and b within one task and model; None when they
    share no (seed, example)."""
    per_example, n_seeds = _paired(rows, a, b)
    if per_example.empty:
        return None
    x, y = per_example["score_a"].to_numpy(), per_example["score_b"].to_numpy()
    if y.mean() > x.mean():  # orient so a leads and diff reads as a gain
        a, b, x, y = b, a, y, x
    binary = _is_binary(metric, np.concatenate([x, y]))
    res = compare_pair(x, y, binary=binary, seed=BOOTSTRAP_SEED, n_resamples=N_RESAMPLES,
                       confidence=CONFIDENCE, alpha=ALPHA)
    verdict = {"a better": f"{a} better", "b better": f"{b} better"}.get(res["verdict"], "tie")
    sd = float(np.std(x - y, ddof=1)) if len(x) > 1 else math.nan
    if sd == 0 and res["diff"] == 0:
        needed = math.inf  # never disagree: no n separates them
    else:
        needed = n_to_detect(res["diff"], sd, ALPHA, POWER) if verdict == "tie" else math.nan
    return {"a": a, "b": b, "n_seeds": n_seeds, "n": res["n"], "mean_a": float(x.mean()),
            "mean_b": float(y.mean()), "diff": res["diff"], "ci_low": res["ci"][0], "ci_high": res["ci"][1],
            "p_value": res["p_value"], "test": res["test"], "verdict": verdict, "sd_diff": sd,
            "mde": min_detectable_diff(sd, res["n"], ALPHA, POWER), "n_needed": needed}


def compare_strategies(frames: RunFrames) -> pd.DataFrame:
    """Every pair of strategies per (task, model), finished cells only."""
    rows = ok_rows(frames)
    metrics = metric_by_task(frames)
    out: list[dict[str, Any]] = []
    for (task, model), group in rows.groupby(["task", "model"], sort=False):
        strategies = list(dict.fromkeys(group["strategy"]))
        for a, b in itertools.combinations(strategies, 2):
            found = compare_two(group, a, b, metrics.get(task))
            if found:
                out.append({"task": task, "model": model, **found})
        # Each strategy against the constant predictors, on the same examples and seeds.
        for name, scores in per_example(frames, task, group, metrics.get(task)).items():
            if name not in PREDICTORS:
                continue
            pairs = group[["seed", "example_id"]].drop_duplicates()
            fake = pairs.assign(strategy=name, score=pairs["example_id"].map(scores).astype(float))
            both = pd.concat([group[["seed", "example_id", "strategy", "score"]], fake], ignore_index=True)
            for a in strategies:
                found = compare_two(both, a, name, metrics.get(task))
                if found:
                    out.append({"task": task, "model": model, **found})
    return pd.DataFrame(out, columns=COMPARISON_COLUMNS)


def find(comparisons: pd.DataFrame, task: str, model: str, x: str, y: str) -> dict[str, Any] | None:
    """The comparison of x and y (either orientation) in a task and model."""
    if comparisons.empty:
        return None
    hit = comparisons[(comparisons["task"] == task) & (comparisons["model"] == model)
                      & (((comparisons["a"] == x) & (comparisons["b"] == y))
                         | ((comparisons["a"] == y) & (comparisons["b"] == x)))]
    return hit.iloc[0].to_dict() if len(hit) else None


def fmt_p(p: Any) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def evidence(c: dict[str, Any]) -> str:
    """"+0.31 [0.22, 0.40], McNemar p=0.001": the difference, its interval and test."""
    text = f"{c['diff']:+.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
    return f"{text}, McNemar {fmt_p(c['p_value'])}" if c["test"] == "mcnemar" else f"{text}, paired bootstrap"


def sample_size(c: dict[str, Any]) -> str:
    """"n=32 detects 0.31 (80% power); this gap needs n≈310": what the n can and cannot settle."""
    mde, needed = c.get("mde"), c.get("n_needed")
    parts = []
    if isinstance(mde, (int, float)) and math.isfinite(mde):
        parts.append(f"n={c['n']} detects a difference of {mde:.2f} (80% power)")
    if c.get("verdict") == "tie" and isinstance(needed, (int, float)) and not math.isnan(needed):
        parts.append("no gap to detect" if math.isinf(needed) else f"this gap needs n≈{int(needed):,}")
    return "; ".join(parts)


def describe(c: dict[str, Any]) -> str:
    """"rag vs prompting: +0.31 [0.22, 0.40], McNemar p=0.001 -> rag better (n=40; n=40 detects ...)"."""
    size = sample_size(c)
    return f"{c['a']} vs {c['b']}: {evidence(c)} -> {c['verdict']} (n={c['n']}{'; ' + size if size else ''})"

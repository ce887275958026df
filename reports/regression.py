"""`bench compare`: a new run against a baseline, cell by cell, as a regression gate.

Cells are matched by (task, strategy, model). The score change is paired: both runs'
per-example scores (averaged over each run's finished seeds) are joined on example id,
and a paired bootstrap gives the interval of the mean change (`bench.stats`), so the
gate reacts to the examples that changed, not to the spread between examples. A cell
regresses when
- the whole interval of the score change lies below -tolerance (a drop the data cannot
  explain as noise, and bigger than the tolerance), or
- its p50 latency, or its cost per 1,000 queries, grew past the given ratio, or
- it finished in the baseline and failed in the new run, or
- it is incomplete on either side (rows missing or damaged: `reports.frame`), since
  no verdict can be drawn from numbers that lost rows.
A cell only in the baseline is reported as "not run" and is no regression: a run of a
subset of the grid (one task in CI) is a legitimate comparison. Medians, not p95, gate
latency: on shared CI machines the tail is mostly the neighbours' noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.stats import paired_bootstrap_diff
from reports.frame import KEYS, NOT_OK, RunFrames, is_missing, ok_rows
from reports.intervals import BOOTSTRAP_SEED, CONFIDENCE, N_RESAMPLES
from reports.summary import summarize

COLUMNS = KEYS + ["metric", "status", "regression", "reasons", "n_common", "score_base", "score_new", "delta",
                  "delta_ci_low", "delta_ci_high", "latency_p50_base_ms", "latency_p50_new_ms", "latency_ratio",
                  "cost_per_1k_base_usd", "cost_per_1k_new_usd", "cost_ratio"]


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression; see the module docstring."""

    tolerance: float = 0.01
    max_latency_ratio: float = 1.5
    max_cost_ratio: float = 1.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise BenchError(f"--tolerance must be a score difference >= 0 (0.01 = 1 point), got {self.tolerance}")
        for name in ("max_latency_ratio", "max_cost_ratio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 1.0):
                flag = "--" + name.replace("_", "-")
                raise BenchError(f"{flag} must be a ratio >= 1 (1.5 = 50% slower or dearer), got {value}")


def _scores(frames: RunFrames) -> dict[tuple, pd.Series]:
    """Per (task, strategy, model): each example's score averaged over finished seeds."""
    rows = ok_rows(frames)
    return {key: g.groupby("example_id", sort=False)["score"].mean().dropna()
            for key, g in rows.groupby(KEYS, sort=False)}


def _ratio(new: Any, base: Any) -> float:
    if is_missing(new) or is_missing(base) or float(base) <= 0:
        return math.nan
    return float(new) / float(base)


def _paired(base: pd.Series | None, new: pd.Series | None) -> tuple[int, float, float, float]:
    """(n common examples, mean change, low, high); nan where nothing pairs."""
    if base is None or new is None:
        return 0, math.nan, math.nan, math.nan
    both = pd.concat([base.rename("base"), new.rename("new")], axis=1, join="inner").dropna()
    if both.empty:
        return 0, math.nan, math.nan, math.nan
    diff, low, high = paired_bootstrap_diff(both["new"].to_numpy(), both["base"].to_numpy(), n_resamples=N_RESAMPLES,
                                            confidence=CONFIDENCE, seed=BOOTSTRAP_SEED)
    return len(both), diff, low, high


def _compare_cell(key: tuple, b: dict | None, n: dict | None, base_scores: pd.Series | None,
                  new_scores: pd.Series | None, th: Thresholds) -> dict[str, Any]:
    out: dict[str, Any] = dict(zip(KEYS, key), metric=(n or b or {}).get("metric"), regression=False, reasons=[])
    if n is None:
        return {**out, "status": "not run", "reasons": ["in the baseline only"]}
    if b is None:
        return {**out, "status": "new", "reasons": ["not in the baseline"]}
    base_ok, new_ok = b["status"] not in NOT_OK, n["status"] not in NOT_OK
    for side, r in (("new run", n), ("baseline", b)):
        if r["status"] == "incomplete":  # missing or damaged rows: no verdict either way
            return {**out, "status": "incomplete" if side == "new run" else "baseline incomplete",
                    "regression": True, "reasons": [f"incomplete in the {side}: {str(r.get('error'))[:300]}"]}
    if base_ok and not new_ok:
        return {**out, "status": "failed", "regression": True,
                "reasons": [f"failed in the new run: {str(n.get('error') or n['status'])[:200]}"]}
    if not base_ok:
        return {**out, "status": "baseline failed", "reasons": ["the baseline cell failed; nothing to compare"]}
    n_common, delta, low, high = _paired(base_scores, new_scores)
    row = {**out, "n_common": n_common, "score_base": b["score"], "score_new": n["score"], "delta": delta,
           "delta_ci_low": low, "delta_ci_high": high,
           "latency_p50_base_ms": b["latency_p50_ms"], "latency_p50_new_ms": n["latency_p50_ms"],
           "latency_ratio": _ratio(n["latency_p50_ms"], b["latency_p50_ms"]),
           "cost_per_1k_base_usd": b["cost_per_1k_usd"], "cost_per_1k_new_usd": n["cost_per_1k_usd"],
           "cost_ratio": _ratio(n["cost_per_1k_usd"], b["cost_per_1k_usd"])}
    reasons = []
    if n_common == 0:
        reasons.append("no common examples: scores not compared (different data, split or limit?)")
    elif high < -th.tolerance:
        reasons.append(f"score fell {delta:+.3f} [{low:+.3f}, {high:+.3f}], below -{th.tolerance:g}")
    if row["latency_ratio"] > th.max_latency_ratio:
        reasons.append(f"p50 latency x{row['latency_ratio']:.2f} (limit x{th.max_latency_ratio:g})")
    if row["cost_ratio"] > th.max_cost_ratio:
        reasons.append(f"cost per query x{row['cost_ratio']:.2f} (limit x{th.max_cost_ratio:g})")
    regressed = any(not r.startswith("no common") for r in reasons)
    return {**row, "status": "regression" if regressed else "ok", "regression": regressed, "reasons": reasons}


def compare_runs(base: RunFrames, new: RunFrames, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """One row per cell of either run (the new run's order, then the baseline's extras)."""
    th = thresholds or Thresholds()
    base_sum, new_sum = summarize(base), summarize(new)
    if base_sum.empty:
        raise BenchError(f"baseline {base.root} holds no finished cells to compare against")
    if new_sum.empty:
        raise BenchError(f"run {new.root} holds no finished cells to compare")
    b_rows = {tuple(r[k] for k in KEYS): r for r in base_sum.to_dict(orient="records")}
    n_rows = {tuple(r[k] for k in KEYS): r for r in new_sum.to_dict(orient="records")}
    b_scores, n_scores = _scores(base), _scores(new)
    keys = list(dict.fromkeys([*n_rows, *b_rows]))
    out = [_compare_cell(k, b_rows.get(k), n_rows.get(k), b_scores.get(k), n_scores.get(k), th) for k in keys]
    return pd.DataFrame(out, columns=COLUMNS)


def regressions(result: pd.DataFrame) -> pd.DataFrame:
    return result[result["regression"].astype(bool)]


def headline(result: pd.DataFrame) -> str:
    """"2 regressions in 12 cells: squad/rag (score fell ...); ..." or "no regression"."""
    bad = regressions(result)
    compared = int((result["status"].isin(["ok", "regression", "failed", "incomplete", "baseline incomplete"])).sum())
    if bad.empty:
        return f"No regression in {compared} compared cell{'s' if compared != 1 else ''}."
    items = [f"{r['task']} / {r['strategy']} ({'; '.join(r['reasons'])})" for r in bad.to_dict(orient="records")]
    return f"{len(bad)} regression{'s' if len(bad) != 1 else ''} in {compared} compared cells: " + "; ".join(items)

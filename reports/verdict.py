"""The one-line verdict per task at the top of each report.html section.

A difference is called only when the paired comparison calls it: two strategies whose
interval of the difference contains 0 (or whose McNemar p is at least 0.05) "tie",
whatever their point scores say, because readers act on the words, not the decimals.
Every strategy that ties with the leader is named in the tie; without a paired test
(different models) overlapping score intervals are a tie.
Accuracy is then set beside speed, cost per query and the break-even volume between
the most accurate strategy and the cheapest one, which is the trade-off a team weighs.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports.compare_pairs import evidence, find
from reports.costs import fmt_usd
from reports.frame import best_index, is_missing


def display_labels(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Display name per (strategy, model): the model is named only when a task has several."""
    many = rows["model"].nunique() > 1
    return {(r.strategy, r.model): f"{r.strategy} · {r.model}" if many else str(r.strategy)
            for r in rows.itertuples()}


def score_with_ci(row: Any) -> str:
    """"0.71 [0.62, 0.80]"."""
    text = f"{float(row['score']):.2f}"
    if is_missing(row.get("score_ci_low")) or is_missing(row.get("score_ci_high")):
        return text
    return f"{text} [{float(row['score_ci_low']):.2f}, {float(row['score_ci_high']):.2f}]"


def _overlap(x: Any, y: Any) -> bool:
    """Whether two rows' score intervals overlap (False when either is missing)."""
    lows, highs = (x.get("score_ci_low"), y.get("score_ci_low")), (x.get("score_ci_high"), y.get("score_ci_high"))
    if any(is_missing(v) for v in (*lows, *highs)):
        return False
    return float(lows[0]) <= float(highs[1]) and float(lows[1]) <= float(highs[0])


def _ties(top: Any, others: pd.DataFrame, comparisons: pd.DataFrame | None) -> list[tuple[Any, dict | None]]:
    """The rows that tie with `top`, each with its paired comparison (None if unpaired).

    Same model: the paired test decides (it is the sharper instrument: two marginal
    intervals can overlap while the paired difference is clear). Different models or no
    shared examples: overlapping intervals are a tie, as nothing sharper is available.
    """
    out = []
    for _, row in others.iterrows():
        pair = None
        if comparisons is not None and top["model"] == row["model"]:
            pair = find(comparisons, top["task"], top["model"], top["strategy"], row["strategy"])
        if (pair["verdict"] == "tie") if pair is not None else _overlap(top, row):
            out.append((row, pair))
    return out


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _accuracy(ok: pd.DataFrame, labels: dict, comparisons: pd.DataFrame | None, metric: str) -> str | None:
    ranked = ok.dropna(subset=["score"]).sort_values("score", ascending=False, kind="stable")
    if ranked.empty:
        return None
    top = ranked.iloc[0]
    name = labels[(top["strategy"], top["model"])]
    if len(ranked) < 2:
        return f"{name} is most accurate, {score_with_ci(top)}"
    tied = _ties(top, ranked.iloc[1:], comparisons)
    if tied:
        names = [name] + [labels[(r["strategy"], r["model"])] for r, _ in tied]
        scores = " vs ".join(score_with_ci(r) for r in [top] + [r for r, _ in tied])
        pair = tied[0][1]
        why = f"; difference {evidence(pair)}" if len(tied) == 1 and pair is not None else (
            "; intervals overlap" if len(tied) == 1 else "")
        return f"{_names(names)} tie on {metric} ({scores}{why})"
    second = ranked.iloc[1]
    other = labels[(second["strategy"], second["model"])]
    pair = None
    if comparisons is not None and top["model"] == second["model"]:
        pair = find(comparisons, top["task"], top["model"], top["strategy"], second["strategy"])
    if pair is None:  # different models, intervals apart: no paired test to quote
        return f"{name} is most accurate, {score_with_ci(top)} (next: {other}, {score_with_ci(second)})"
    return (f"{name} is most accurate, {score_with_ci(top)}, ahead of {other} "
            f"({score_with_ci(second)}; difference {evidence(pair)})")


def _cheapest(ok: pd.DataFrame) -> list:
    """Index labels of every row at the lowest cost per query (equal costs are a tie)."""
    costs = pd.to_numeric(ok["cost_per_1k_usd"], errors="coerce").dropna()
    if costs.empty:
        return []
    return list(costs.index[np.isclose(costs.to_numpy(), costs.min(), rtol=1e-9, atol=0.0)])


def _times(ok: pd.DataFrame, cheap: Any, labels: dict) -> str:
    """", 5.7x less than rag": how much cheaper than the most accurate strategy."""
    best = best_index(ok, "score")
    if best is None or best == cheap:
        return ""
    hi, lo = ok.at[best, "cost_per_1k_usd"], ok.at[cheap, "cost_per_1k_usd"]
    if is_missing(hi) or is_missing(lo) or float(lo) <= 0:
        return ""
    ratio = float(hi) / float(lo)
    text = f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"
    return f", {text} less than {labels[(ok.at[best, 'strategy'], ok.at[best, 'model'])]}"


def _cost(ok: pd.DataFrame, labels: dict) -> str | None:
    cheap = _cheapest(ok)
    if not cheap:
        return None
    price = fmt_usd(ok.at[cheap[0], "cost_per_1k_usd"])
    names = [labels[(ok.at[i, "strategy"], ok.at[i, "model"])] for i in cheap]
    if len(names) == 1:
        return f"{names[0]} is cheapest per query ({price} per 1,000{_times(ok, cheap[0], labels)})"
    if len(names) == len(ok):
        return f"all cost the same per query ({price} per 1,000)"
    return f"{' and '.join(names)} are cheapest per query ({price} per 1,000)"


def _break_even(ok: pd.DataFrame, break_even: pd.DataFrame | None, labels: dict) -> str | None:
    """The break-even between the most accurate and the cheapest-per-query strategy."""
    best, cheap = best_index(ok, "score"), _cheapest(ok)
    if break_even is None or break_even.empty or best is None or len(cheap) != 1 or best == cheap[0]:
        return None
    x, y = ok.loc[best], ok.loc[cheap[0]]
    if x["model"] != y["model"]:
        return None
    hit = break_even[(break_even["task"] == x["task"]) & (break_even["model"] == x["model"])
                     & break_even["a"].isin([x["strategy"], y["strategy"]])
                     & break_even["b"].isin([x["strategy"], y["strategy"]])]
    return f"break-even: {hit.iloc[0]['meaning']}" if len(hit) else None


def verdict(rows: pd.DataFrame, labels: dict, metric: str = "score", comparisons: pd.DataFrame | None = None,
            break_even: pd.DataFrame | None = None) -> str:
    ok = rows[rows["status"] == "ok"]
    if "sweep_picked" in ok:  # a sweep competes with the setting validation picked, never its test-best one
        ok = ok[ok["sweep_picked"].isna() | ok["sweep_picked"].astype(object).eq(True)]
    parts = [_accuracy(ok, labels, comparisons, metric)]
    if (i := best_index(ok, "latency_p50_ms")) is not None:
        parts.append(f"{labels[(ok.at[i, 'strategy'], ok.at[i, 'model'])]} is fastest "
                     f"(p50 {ok.at[i, 'latency_p50_ms']:.0f} ms)")
    parts.append(_cost(ok, labels))
    parts.append(_break_even(ok, break_even, labels))
    return "; ".join(p for p in parts if p) or "no strategy finished this task"

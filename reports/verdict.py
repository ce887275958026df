"""The one-line verdict per task at the top of each report.html section.

A difference is called only when the paired comparison calls it: two strategies whose
interval of the difference contains 0 (or whose McNemar p is at least 0.05) "tie",
whatever their point scores say, because readers act on the words, not the decimals.
Every strategy that ties with the leader is named in the tie; without a paired test
(different models) overlapping score intervals are a tie.
Accuracy is then set beside speed, cost per query and the break-even volume between
the most accurate strategy and the cheapest one, which is the trade-off a team weighs.
Speed and cost are judged like accuracy: "fastest" only when the paired latency test
on the same queries (or, without one, the p50 intervals) separates the leader from
every other strategy, else a latency tie; "cheapest" only when the cost intervals
separate (a cost with no measured timing noise is called uncertain). A strategy the
paired test cannot tell from a trivial constant predictor is named as such.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports.compare_pairs import evidence, find, sample_size
from reports.costs import fmt_usd
from reports.frame import BASELINE, best_index, is_missing
from reports.latency_pairs import find_latency
from reports.retrieval import sentence
from reports.trivial import PREDICTORS


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
        sizes = [sample_size(p) for _, p in tied if p is not None]
        if len(tied) == 1 and sizes and sizes[0]:
            why += f"; {sizes[0]}"
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


def _apart(x: Any, y: Any, column: str) -> bool:
    """Whether x's interval on `column` lies wholly below y's (False when either is missing)."""
    hi, lo = x.get(f"{column}_ci_high"), y.get(f"{column}_ci_low")
    return not (is_missing(hi) or is_missing(lo)) and float(hi) < float(lo)


def _ties_with_lowest(ok: pd.DataFrame, column: str, values: pd.Series, latency: pd.DataFrame | None = None) -> list:
    """Index labels of the lowest row by `values` and of every row it cannot be told
    from: an equal value, overlapping intervals, or no interval to judge by. With
    `latency` comparisons, a paired verdict on the same queries decides instead."""
    low = values.idxmin()
    x = ok.loc[low]
    out = []
    for i, v in values.items():
        if i == low or np.isclose(v, values.min(), rtol=1e-9, atol=0.0):
            out.append(i)
            continue
        pair = find_latency(latency, x["task"], x["model"], x["strategy"], ok.at[i, "strategy"]) \
            if latency is not None and x["model"] == ok.at[i, "model"] else None
        if pair is not None:
            if pair["verdict"] != f"{x['strategy']} faster":
                out.append(i)
        elif not _apart(x, ok.loc[i], column):
            out.append(i)
    return out


def _cheapest(ok: pd.DataFrame) -> list:
    """Index labels of every row at the lowest cost per query, intervals considered."""
    costs = pd.to_numeric(ok["cost_per_1k_usd"], errors="coerce").dropna()
    if costs.empty:
        return []
    if "cost_per_1k_ci_low" not in ok or ok.loc[costs.index, "cost_per_1k_ci_low"].isna().all():
        # No timing noise known at all: the point estimates are all there is.
        return list(costs.index[np.isclose(costs.to_numpy(), costs.min(), rtol=1e-9, atol=0.0)])
    return _ties_with_lowest(ok.loc[costs.index], "cost_per_1k", costs)


def _fastest(ok: pd.DataFrame, labels: dict, latency: pd.DataFrame | None) -> str | None:
    """"lora is fastest (p50 120 ms [110, 131])", or the latency tie."""
    p50 = pd.to_numeric(ok["latency_p50_ms"], errors="coerce").dropna() if "latency_p50_ms" in ok else pd.Series()
    if p50.empty:
        return None
    tied = _ties_with_lowest(ok.loc[p50.index], "latency_p50", p50, latency)
    name = lambda i: labels[(ok.at[i, "strategy"], ok.at[i, "model"])]  # noqa: E731

    def ms(i: Any) -> str:
        low, high = ((ok.at[i, "latency_p50_ci_low"], ok.at[i, "latency_p50_ci_high"])
                     if "latency_p50_ci_low" in ok else (None, None))
        ci = "" if is_missing(low) or is_missing(high) else f" [{float(low):.0f}, {float(high):.0f}]"
        return f"{float(ok.at[i, 'latency_p50_ms']):.0f}{ci}"

    if len(p50) == 1:
        return None
    lead = p50.idxmin()
    measured = ("latency_p50_ci_low" in ok and not is_missing(ok.at[lead, "latency_p50_ci_low"])) or (
        latency is not None and not latency.empty and bool(((latency["task"] == ok.at[lead, "task"])
                                                            & (latency["model"] == ok.at[lead, "model"])).any()))
    if not measured:
        return (f"{name(lead)} has the lowest p50 latency ({ms(lead)} ms; uncertain: no batch-1 probes, "
                "so no interval)")
    if len(tied) == 1:
        flag = ok.at[lead, "latency_flag"] if "latency_flag" in ok else None
        if isinstance(flag, str) and flag:  # say it, but never as a plain "fastest"
            return f"{name(lead)} measured fastest (p50 {ms(lead)} ms), but its latency is {flag}"
        return f"{name(tied[0])} is fastest (p50 {ms(tied[0])} ms)"
    what = "all strategies" if len(tied) == len(p50) else _names([name(i) for i in tied])
    return (f"latency tie between {what} (p50 {' vs '.join(ms(i) for i in tied)} ms; "
            "the intervals or the paired test on the same queries cannot separate them)")


def _flags(ok: pd.DataFrame, labels: dict, said: str | None) -> str | None:
    """Implausible latencies not already named in the speed sentence `said`."""
    if "latency_flag" not in ok:
        return None
    bad = [f"{labels[(r['strategy'], r['model'])]}'s latency is {r['latency_flag']}" for _, r in ok.iterrows()
           if isinstance(r.get("latency_flag"), str) and r["latency_flag"] and r["latency_flag"] not in (said or "")]
    return "; ".join(bad) or None


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
    known = "cost_per_1k_ci_low" in ok and not is_missing(ok.at[cheap[0], "cost_per_1k_ci_low"])
    if len(names) == 1:
        note = "" if known else "; uncertain: no timing noise was measured"
        return f"{names[0]} is cheapest per query ({price} per 1,000{_times(ok, cheap[0], labels)}{note})"
    costs = [ok.at[i, "cost_per_1k_usd"] for i in cheap]
    if np.allclose(costs, costs[0], rtol=1e-9, atol=0.0):
        return f"{'all' if len(names) == len(ok) else _names(names)} cost the same per query ({price} per 1,000)"
    return (f"cost per query tie between {_names(names)} ({' vs '.join(fmt_usd(c) for c in costs)} per 1,000; "
            "their intervals overlap)")


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


def _baselines(ok: pd.DataFrame, rows: pd.DataFrame, labels: dict, comparisons: pd.DataFrame | None) -> str | None:
    """"prompting is not better than majority-class (0.19 vs 0.50; ...)": a strategy the
    paired test cannot tell from (or finds worse than) a constant predictor."""
    refs = rows[(rows["status"] == BASELINE) & rows["strategy"].isin(PREDICTORS)]
    if comparisons is None or refs.empty:
        return None
    out = []
    for _, ref in refs.iterrows():
        weak = []
        for _, r in ok[ok["model"] == ref["model"]].iterrows():
            pair = find(comparisons, r["task"], r["model"], r["strategy"], ref["strategy"])
            if pair is not None and pair["verdict"] != f"{r['strategy']} better":
                weak.append((labels[(r["strategy"], r["model"])], r, pair))
        if not weak:
            continue
        names = _names([w[0] for w in weak])
        verb = "is" if len(weak) == 1 else "are"
        scores = ", ".join(f"{w[0]} {float(w[1]['score']):.2f}" for w in weak)
        how = "worse than" if all(w[2]["verdict"] == f"{ref['strategy']} better" for w in weak) else "no better than"
        out.append(f"{names} {verb} {how} the trivial {ref['strategy']} baseline ({float(ref['score']):.2f}; "
                   f"{scores}; paired test on the same examples)")
    return "; ".join(out) or None


def verdict(rows: pd.DataFrame, labels: dict, metric: str = "score", comparisons: pd.DataFrame | None = None,
            break_even: pd.DataFrame | None = None, latency: pd.DataFrame | None = None) -> str:
    """The task's verdict line. `latency`: `reports.latency_pairs.latency_comparisons`,
    for paired latency verdicts on the same queries (else p50 intervals decide)."""
    ok = rows[rows["status"] == "ok"]
    if "sweep_picked" in ok:  # a sweep competes with the setting validation picked, never its test-best one
        ok = ok[ok["sweep_picked"].isna() | ok["sweep_picked"].astype(object).eq(True)]
    speed = _fastest(ok, labels, latency)
    parts = [_accuracy(ok, labels, comparisons, metric), _baselines(ok, rows, labels, comparisons), speed,
             _flags(ok, labels, speed)]
    parts += [sentence(r, labels[(r["strategy"], r["model"])], metric) for _, r in ok.iterrows()]
    parts.append(_cost(ok, labels))
    parts.append(_break_even(ok, break_even, labels))
    return "; ".join(p for p in parts if p) or "no strategy finished this task"

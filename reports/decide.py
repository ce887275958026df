"""Constraints to a recommendation: per task, the strategy to ship under the team's
`decide:` block (`reports.decide_config`), with the margin on each constraint.

Every finished strategy is checked against each constraint with the interval the
reports already compute:
- min_score: the score's 95% bootstrap interval over test examples (`reports.intervals`);
- max_p95_ms: the 95% interval of the batch-1 p95 from the latency probes
  (`reports.latency_pairs`); without probes the p95 is a share of a batched pass and has
  no interval;
- max_monthly_usd: monthly_queries x cost per query, its interval from the bootstrapped
  timings (`reports.costs`), plus prepare cost / amortize_months (default 12: a one-off
  index build or training run paid back over a year; held fixed, as break-even holds it:
  one measurement, no noise known).
A check passes only when the whole interval lies on the right side of the limit; a
point estimate on the wrong side fails; a point estimate on the right side whose
interval crosses the limit (or that has no interval) is "uncertain", never a pass.

Rules, per task:
- ship: among the strategies passing every constraint, the cheapest (monthly cost; cost
  per query without monthly_queries). Strategies whose cost intervals overlap the
  cheapest's tie on cost, and the tie goes to the higher score (then the lower p95).
- uncertain: none passes everything but some fail nothing; the same rule names the
  likeliest, and the verdict says what would settle it.
- none: every strategy fails a constraint at its point estimate. The binding constraint
  is the one whose relaxation alone admits a strategy, with the smallest relative change
  of its limit (relaxed to the interval's far end, so that the strategy then passes it);
  when no strategy is one relaxation away, the one that excludes the most strategies.
  A relaxation is offered only when it is within reach: the admitting value is at least
  half of a minimum, or at most twice a maximum (`FAR`). A score of 0.05 against
  min_score 0.30 needs a new approach, not a limit of 0.02. When every single
  relaxation is out of reach, the sentence says that no strategy comes near the
  constraint and gives the best value against the limit instead.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import pandas as pd

from reports.costs import fmt_usd
from reports.decide_config import Constraints, DecideConfig, describe, from_manifest
from reports.frame import RunFrames, is_missing
from reports.verdict import display_labels

PASS, UNCERTAIN, FAIL = "pass", "uncertain", "fail"
# key -> (what, summary columns: value, interval low, high; higher is better)
MEASURES = {"min_score": ("score", "score", "score_ci_low", "score_ci_high", True),
            "max_p95_ms": ("p95", "latency_p95_ms", "latency_p95_ci_low", "latency_p95_ci_high", False),
            "max_monthly_usd": ("monthly cost", "monthly_usd", "monthly_usd_ci_low", "monthly_usd_ci_high", False)}
# Out of reach: a relaxation that takes a minimum below 1/FAR of it or a maximum past FAR
# times it is no team's option (halving the score a product needs, doubling its latency).
FAR = 2.0
# key -> (who is best on it, what it does) for "the best, rag, scores 0.05 [0.02, 0.09]"
BEST = {"min_score": ("best", "scores"), "max_p95_ms": ("fastest", "has a p95 of"),
        "max_monthly_usd": ("cheapest", "costs")}
SETTLE = {"min_score": "more test examples (`limit`) narrow the score interval",
          "max_p95_ms": "more batch-1 probes (`latency_sample`) narrow the p95 interval",
          "max_monthly_usd": "more timed queries narrow the cost interval"}


def _num(v: Any) -> float:
    return math.nan if is_missing(v) else float(v)


def fmt_value(key: str, v: float) -> str:
    if key == "min_score":
        return f"{v:.3f}" if 0 < abs(v) < 0.005 else f"{v:.2f}"
    return f"{v:,.0f} ms" if key == "max_p95_ms" else fmt_usd(v)


def _with_ci(key: str, v: float, low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return fmt_value(key, v)
    unit = " ms" if key == "max_p95_ms" else ""
    strip = (lambda t: t.removesuffix(" ms"))
    return f"{strip(fmt_value(key, v))}{unit} [{strip(fmt_value(key, low))}, {strip(fmt_value(key, high))}]"


@dataclass(frozen=True)
class Check:
    """One strategy against one constraint."""

    key: str
    state: str
    value: float
    low: float
    high: float
    limit: float
    margin: float  # at the point estimate; > 0 is room to spare
    worst: float  # at the interval's far end (nan: no interval)
    relaxed: float  # the limit at which this check would pass
    text: str  # for sentences
    short: str  # for tables: the state and the margin at worst
    shown: str  # the value with its interval


def check(key: str, limit: float, value: float, low: float, high: float, why_no_ci: str = "no interval") -> Check:
    what, _, _, _, higher = MEASURES[key]
    sign = 1.0 if higher else -1.0
    far = low if higher else high
    margin, worst = sign * (value - limit), sign * (far - limit)
    end = "low" if higher else "high"
    bound = f"{'min' if higher else 'max'} {fmt_value(key, limit)}"
    value_text = _with_ci(key, value, low, high)
    shown = f"{what} {value_text} vs {bound}"
    amount = lambda x: fmt_value(key, abs(x))  # noqa: E731
    room = lambda x: f"{'+' if higher and x >= 0 else '-' if x < 0 else ''}{amount(x)}"  # noqa: E731
    if math.isnan(value):
        return Check(key, UNCERTAIN, value, low, high, limit, math.nan, math.nan, math.nan,
                     f"{what} not measured", "not measured", "–")
    relaxed = value if math.isnan(far) else far
    if margin < 0:
        gap = f"{amount(margin)} {'short' if higher else 'over'}"
        return Check(key, FAIL, value, low, high, limit, margin, worst, relaxed, f"{shown}: {gap}", f"fail, {gap}",
                     value_text)
    if math.isnan(far):
        return Check(key, UNCERTAIN, value, low, high, limit, margin, worst, relaxed,
                     f"{shown}: margin {room(margin)} at the point estimate only ({why_no_ci})",
                     f"uncertain, {why_no_ci}", value_text)
    if worst < 0:
        return Check(key, UNCERTAIN, value, low, high, limit, margin, worst, relaxed,
                     f"{shown}: meets it only at the point estimate (margin {room(margin)}; the interval's {end} "
                     f"end is {amount(worst)} {'short' if higher else 'over'})", f"uncertain, {room(worst)} at worst",
                     value_text)
    return Check(key, PASS, value, low, high, limit, margin, worst, relaxed,
                 f"{shown}: margin {room(margin)}, {room(worst)} at the interval's {end} end",
                 f"pass, {room(worst)} at worst", value_text)


@dataclass(frozen=True)
class Candidate:
    label: str
    strategy: str
    model: str
    n: float
    score: float
    p95: float
    cost: float  # monthly USD with monthly_queries, else USD per 1,000 queries
    cost_low: float
    cost_high: float
    cost_text: str
    checks: tuple[Check, ...]

    @property
    def state(self) -> str:
        states = {c.state for c in self.checks}
        return FAIL if FAIL in states else UNCERTAIN if UNCERTAIN in states else PASS

    def of(self, state: str) -> list[Check]:
        return [c for c in self.checks if c.state == state]


def _candidate(row: Mapping[str, Any], label: str, c: Constraints) -> Candidate:
    per_1k = [_num(row.get(k)) for k in ("cost_per_1k_usd", "cost_per_1k_ci_low", "cost_per_1k_ci_high")]
    if c.monthly_queries is not None:
        fixed = _num(row.get("prepare_cost_usd")) / c.amortize_months
        cost, low, high = (v * c.monthly_queries / 1000.0 + fixed for v in per_1k)
        text = f"{_with_ci('max_monthly_usd', cost, low, high)} a month at {c.monthly_queries:,} queries"
    else:
        cost, low, high = per_1k
        text = f"{_with_ci('max_monthly_usd', cost, low, high)} per 1,000 queries"
    values = {"score": (_num(row.get("score")), _num(row.get("score_ci_low")), _num(row.get("score_ci_high"))),
              "p95": (_num(row.get("latency_p95_ms")), _num(row.get("latency_p95_ci_low")),
                      _num(row.get("latency_p95_ci_high"))), "monthly cost": (cost, low, high)}
    probed = not is_missing(row.get("latency_probe_n")) and _num(row.get("latency_probe_n")) > 0
    why = {"max_p95_ms": "too few batch-1 probes for an interval" if probed else
           "no batch-1 latency probes: a share of the batched pass", "max_monthly_usd":
           "too few independent timings to know the cost's noise", "min_score": "no interval"}
    checks = tuple(check(k, float(getattr(c, k)), *values[MEASURES[k][0]], why_no_ci=why[k]) for k in c.limits())
    return Candidate(label, str(row["strategy"]), str(row["model"]), _num(row.get("n")), values["score"][0],
                     values["p95"][0], cost, low, high, text, checks)


def _cost_tie(x: Candidate, y: Candidate) -> bool:
    if math.isclose(x.cost, y.cost, rel_tol=1e-9, abs_tol=0.0):
        return True
    known = not any(math.isnan(v) for v in (x.cost_low, x.cost_high, y.cost_low, y.cost_high))
    return known and x.cost_low <= y.cost_high and y.cost_low <= x.cost_high


def pick(cands: list[Candidate], meets: tuple[str, str]) -> tuple[Candidate, str]:
    """The one to ship by the module's rule, and the rule's words for it; `meets`: what
    the candidates do, in the singular and the plural."""
    by_cost = lambda c: math.inf if math.isnan(c.cost) else c.cost  # noqa: E731
    cheapest = min(cands, key=by_cost)
    tied = [c for c in cands if c is cheapest or _cost_tie(c, cheapest) or math.isnan(cheapest.cost)]
    best = max(tied, key=lambda c: (-math.inf if math.isnan(c.score) else c.score,
                                    -(math.inf if math.isnan(c.p95) else c.p95)))
    if len(cands) == 1:
        return best, f"the only strategy that {meets[0]}"
    if len(tied) == 1:
        return best, f"the cheapest of the {len(cands)} that {meets[1]}"
    others = ", ".join(c.label for c in tied if c is not best)
    return best, (f"of the {len(cands)} that {meets[1]}, tied on cost with {others} (the cost intervals overlap), "
                  "and the higher score")


def _settle(c: Candidate) -> str:
    hints = []
    for k in c.of(UNCERTAIN):
        hint = SETTLE[k.key]
        if k.key == "min_score" and k.margin > 0 and not math.isnan(k.worst) and c.n > 0:
            need = c.n * ((k.value - k.low) / k.margin) ** 2  # the interval narrows as 1/sqrt(n)
            hint += f" (about {math.ceil(need):,} examples, if the score holds)"
        if k.key == "max_p95_ms" and "no batch-1" in k.short:
            hint = "batch-1 probes (`latency_sample` > 0) give the p95 an interval"
        if "not measured" in k.short:
            hint = f"measure the {MEASURES[k.key][0]}"
        hints.append(hint)
    return "; ".join(dict.fromkeys(hints))


def _brief(c: Candidate, state: str) -> str:
    return f"{c.label} ({'; '.join(k.text for k in c.of(state))})"


@dataclass(frozen=True)
class Decision:
    task: str
    outcome: str  # ship, uncertain, none, or empty (no strategy finished)
    pick: str | None
    binding: str | None
    text: str
    constraints: Constraints
    candidates: tuple[Candidate, ...]

    def record(self) -> dict[str, Any]:
        clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
        return {"task": self.task, "outcome": self.outcome, "pick": self.pick, "binding": self.binding,
                "text": self.text, "constraints": asdict(self.constraints),
                "candidates": [{"strategy": c.strategy, "model": c.model, "state": c.state, "cost": clean(c.cost),
                                "cost_text": c.cost_text,
                                "checks": [{name: clean(v) for name, v in asdict(chk).items()} for chk in c.checks]}
                               for c in self.candidates]}


def out_of_reach(k: Check) -> bool:
    """Whether the limit that would admit `k`'s strategy is too far from the one set
    (see `FAR`)."""
    if MEASURES[k.key][4]:
        return k.relaxed < k.limit / FAR
    return k.relaxed > k.limit * FAR


def _none_near(cands: list[Candidate], key: str) -> str:
    """`key` binds, but no relaxation of it within reach admits a strategy: the best
    value on it against the limit, instead of a limit no team would set."""
    higher = MEASURES[key][4]
    checks = [(c, next(k for k in c.checks if k.key == key)) for c in cands]
    if not all(k.state == FAIL and out_of_reach(k) for _, k in checks):
        # Some strategy is near this limit but misses another one too: speak of those missing only it.
        checks = [(c, k) for c, k in checks if c.of(FAIL) == [k]]
    measured = [ck for ck in checks if not math.isnan(ck[1].value)]
    c, k = (max if higher else min)(measured, key=lambda ck: ck[1].value)
    who = "no strategy" if len(checks) == len(cands) else "no strategy that misses only it"
    best, verb = BEST[key]
    best = "the only one" if len(checks) == 1 else f"the {best}" + ("" if len(checks) == len(cands) else " of them")
    suffix = " a month" if key == "max_monthly_usd" else ""
    reach = (f"below {fmt_value(key, k.limit / FAR)}, half the limit" if higher
             else f"above {fmt_value(key, k.limit * FAR)}, twice the limit")
    return (f"{key} binds, and {who} comes near {key} {fmt_value(key, k.limit)}: {best}, {c.label}, {verb} "
            f"{k.shown}{suffix}; relaxing it alone would admit a strategy only {reach}")


def _binding(cands: list[Candidate]) -> tuple[str, str]:
    one_away = [(c, c.of(FAIL)[0]) for c in cands if len(c.of(FAIL)) == 1]
    if one_away:
        rel = lambda k: abs(k.relaxed - k.limit) / (abs(k.limit) or 1.0)  # noqa: E731
        one_away.sort(key=lambda ck: rel(ck[1]))
        near = [(c, k) for c, k in one_away if not out_of_reach(k)]
        if not near:
            return one_away[0][1].key, _none_near(cands, one_away[0][1].key)
        c, k = near[0]
        still = f"; still uncertain on {', '.join(u.key for u in c.of(UNCERTAIN))}" if c.of(UNCERTAIN) else ""
        also = [f"{k2.key} to {fmt_value(k2.key, k2.relaxed)} would admit {c2.label}" for c2, k2 in near[1:3]]
        return k.key, (f"{k.key} binds: relaxing it to {fmt_value(k.key, k.relaxed)} would admit {c.label} "
                       f"({k.text}{still})" + (f"; or relaxing {' or '.join(also)}" if also else ""))
    counts = Counter(k.key for c in cands for k in c.of(FAIL))
    order = [k.key for k in cands[0].checks]
    key = max(order, key=lambda k: (counts[k], -order.index(k)))
    return key, (f"{key} binds: it excludes {counts[key]} of {len(cands)}, and every strategy misses at "
                 "least two constraints")


def decide_task(rows: pd.DataFrame, c: Constraints, labels: Mapping[tuple[str, str], str]) -> Decision:
    ok = rows[rows["status"] == "ok"]
    if "sweep_picked" in ok:  # a sweep competes with the setting validation picked, as in the verdict
        ok = ok[ok["sweep_picked"].isna() | ok["sweep_picked"].astype(object).eq(True)]
    task = str(rows["task"].iloc[0])
    cands = [_candidate(r, labels[(r["strategy"], r["model"])], c) for r in ok.to_dict(orient="records")]
    if not cands:
        return Decision(task, "empty", None, None, "no strategy finished this task", c, ())
    groups = {s: [x for x in cands if x.state == s] for s in (PASS, UNCERTAIN, FAIL)}
    failing = "; ".join(_brief(x, FAIL) for x in groups[FAIL])
    if groups[PASS]:
        best, rule = pick(groups[PASS], ("meets every constraint", "meet every constraint") if c.limits()
                          else ("finished (no limit was set)", "finished (no limit was set)"))
        said = [k.text for k in best.checks] + ([] if "max_monthly_usd" in c.limits() else [best.cost_text])
        parts = [f"ship {best.label}: {rule} ({'; '.join(said)})"]
        others = [x for x in groups[PASS] if x is not best]
        if others:
            parts.append("also meeting them: " + ", ".join(f"{x.label} ({x.cost_text})" for x in others))
        if groups[UNCERTAIN]:
            parts.append("uncertain: " + ", ".join(_brief(x, UNCERTAIN) for x in groups[UNCERTAIN]))
        return Decision(task, "ship", best.label, None, "; ".join(parts + ([f"failing: {failing}"] if failing else [])),
                        c, tuple(cands))
    if groups[UNCERTAIN]:
        best, rule = pick(groups[UNCERTAIN], ("fails no constraint", "fail no constraint"))
        passes = [k.text for k in best.of(PASS)]
        parts = [f"uncertain: no strategy surely meets the constraints; likeliest {best.label} ({rule}): "
                 + "; ".join(k.text for k in best.of(UNCERTAIN)) + (f"; it passes {'; '.join(passes)}" if passes
                                                                     else "") + f"; {_settle(best)}"]
        others = [x for x in groups[UNCERTAIN] if x is not best]
        if others:
            parts.append("also uncertain: " + ", ".join(_brief(x, UNCERTAIN) for x in others))
        return Decision(task, "uncertain", best.label, None, "; ".join(parts + ([f"failing: {failing}"]
                                                                               if failing else [])), c, tuple(cands))
    key, why = _binding(cands)
    return Decision(task, "none", None, key, f"no strategy meets the constraints; {why}; failing: {failing}", c,
                    tuple(cands))


@dataclass(frozen=True)
class RunDecisions:
    """Every task's decision under one set of constraints, and those constraints in words."""

    config: DecideConfig
    constraints: str
    tasks: tuple[Decision, ...]

    def get(self, task: str) -> Decision | None:
        return next((d for d in self.tasks if d.task == task), None)

    def records(self) -> dict[str, Any]:
        return {"source": self.config.source, "constraints": self.constraints,
                "tasks": [d.record() for d in self.tasks]}


def decide_run(frames: RunFrames, summary: pd.DataFrame, flags: Mapping[str, Any] | None = None,
               config: DecideConfig | None = None) -> RunDecisions | None:
    """The run's decisions under its recorded `decide:` block with `flags` over it (or
    under `config`); None when neither sets any constraint."""
    config = config or from_manifest(frames.manifest, flags, where=str(frames.root / "manifest.json"))
    if config is None or summary.empty:
        return None
    tasks = [str(t) for t in dict.fromkeys(summary["task"])]
    out = tuple(decide_task(rows, config.for_task(str(task)), display_labels(rows))
                for task, rows in summary.groupby("task", sort=False))
    return RunDecisions(config, describe(config, tasks), out)

"""Learning curves: score against labelled train examples per strategy, and where one
strategy passes another.

Read from the summary rows only (the run folder): a learning-curve cell's label carries
its train size, `lora(n=200)` (bench/sweeps.py `split_train_size`); an entry without a
size never read the train split (zero-shot prompting) and is drawn as a flat reference.

A crossover is named between each strategy with a curve and every other strategy, for
the pair's leader at the largest size: the last size interval where the leader was not
ahead is where it passed. Sizes grow geometrically, so the point where the score
difference reaches zero is interpolated linearly in log(examples) between the two sizes.
The score intervals decide how it is said: a crossover counts as established only when
the leader's interval clears the other's at the largest size; otherwise the sentence says
only the point estimates cross.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd
from markupsafe import Markup

from bench.sweeps import split_train_size
from reports.frame import BASELINE, NOT_OK, is_missing
from reports.svg import WIDTH, _axes, _short, _svg, color, nice_ticks


@dataclass(frozen=True)
class Point:
    n: int | None  # labelled examples (None: the strategy does not learn from them)
    score: float
    low: float | None
    high: float | None


def _num(value: Any) -> float | None:
    return None if is_missing(value) else float(value)


def task_curves(rows: pd.DataFrame) -> tuple[dict[str, list[Point]], dict[str, Point]]:
    """One task's summary rows -> (name -> points by size, name -> flat point). The name
    is the label without its size, with the model when the task has several."""
    many = rows["model"].nunique() > 1
    curves: dict[str, list[Point]] = {}
    flat: dict[str, Point] = {}
    for r in rows.itertuples():
        if str(r.status) in NOT_OK | {BASELINE} or is_missing(r.score):
            continue
        base, n = split_train_size(r.strategy)
        name = f"{base} · {r.model}" if many else base
        point = Point(n, float(r.score), _num(r.score_ci_low), _num(r.score_ci_high))
        if n is None:
            flat[name] = point
        else:
            curves.setdefault(name, []).append(point)
    for points in curves.values():
        points.sort(key=lambda p: p.n)
    return curves, flat


def about(n: float) -> str:
    """A count to two significant figures: 137 -> "140", 1234 -> "1,200"."""
    if n < 10:
        return f"{n:.0f}"
    digits = int(math.floor(math.log10(n))) - 1
    return f"{round(n, -digits):,.0f}"


def _clears(a: Point, b: Point) -> bool | None:
    """Whether a's interval lies wholly above b's (None when either has none)."""
    if None in (a.low, a.high, b.low, b.high):
        return None
    return a.low > b.high


def crossover(a: str, a_pts: Sequence[Point], b: str, b_pts: Sequence[Point] | Point) -> tuple[float | None, str]:
    """(the interpolated size where the leader passed, or None; the sentence). `b_pts` is
    a curve or one flat point (the same at every size)."""
    if isinstance(b_pts, Point):
        pairs = [(p.n, p, b_pts) for p in a_pts]
    else:
        theirs = {p.n: p for p in b_pts}
        pairs = [(p.n, p, theirs[p.n]) for p in a_pts if p.n in theirs]
    if len(pairs) < 2:
        return None, f"{a} and {b}: fewer than two train sizes in common, so no curve to compare"
    span = f"{pairs[0][0]:,} to {pairs[-1][0]:,} examples"
    diffs = [pa.score - pb.score for _, pa, pb in pairs]
    if diffs[-1] == 0:
        return None, f"{a} and {b} tie at the largest size ({pairs[-1][0]:,} examples)"
    if diffs[-1] < 0:  # orient the pair so the leader at the largest size comes first
        a, b, diffs = b, a, [-d for d in diffs]
        pairs = [(n, pb, pa) for n, pa, pb in pairs]
    behind = [i for i, d in enumerate(diffs) if d <= 0]
    if not behind:
        clear = [_clears(pa, pb) for _, pa, pb in pairs]
        apart = [f"{n:,}" for (n, _, _), c in zip(pairs, clear) if c]
        tail = ("" if any(c is None for c in clear) else
                f"; their 95% intervals are apart at {', '.join(apart)} examples" if apart else
                "; the 95% intervals overlap at every size, so the lead is not established")
        return None, (f"{a} is ahead of {b} at every size tried ({span}): "
                      f"no crossover within the sizes tried{tail}")
    i = behind[-1]
    (n0, _, _), (n1, _, _) = pairs[i], pairs[i + 1]
    t = -diffs[i] / (diffs[i + 1] - diffs[i])
    at = math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
    where = f"about {about(at)} examples (interpolated on a log scale between {n0:,} and {n1:,})"
    after = pairs[i + 1:]
    clear = [_clears(pa, pb) for _, pa, pb in after]
    if clear[-1]:
        return at, (f"{a} overtakes {b} at {where}; at {after[-1][0]:,} examples their 95% intervals "
                    "no longer overlap")
    if clear[-1] is None:
        return at, f"{a}'s point estimate passes {b}'s at {where}; there are no intervals to confirm it"
    overlap_everywhere = all(_clears(pa, pb) is False and _clears(pb, pa) is False for _, pa, pb in pairs)
    tail = ("the intervals overlap at every size" if overlap_everywhere else
            f"the intervals still overlap at {', '.join(f'{n:,}' for n, _, _ in after)} examples")
    return at, f"{a}'s point estimate passes {b}'s at {where}; {tail}, so the crossover is not established"


def sentences(curves: dict[str, list[Point]], flat: dict[str, Point]) -> list[tuple[float | None, str]]:
    """A crossover sentence for each pair with at least one curve, each pair once."""
    out = []
    names = list(curves)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out.append(crossover(a, curves[a], b, curves[b]))
        for b, point in flat.items():
            out.append(crossover(a, curves[a], f"{b} (no train data)", point))
    return out


def chart(curves: dict[str, list[Point]], flat: dict[str, Point], marks: Sequence[float], title: str,
          y_label: str) -> Markup:
    """Score (with its interval) against labelled examples on a log axis; flat
    strategies as dashed lines with their interval as a band; crossovers marked."""
    sizes = sorted({p.n for pts in curves.values() for p in pts})
    values = [v for pts in [*curves.values(), list(flat.values())] for p in pts
              for v in (p.score, p.low, p.high) if v is not None]
    yt = nice_ticks(max(0.0, min(values, default=0.0) - 0.05), min(1.0, max(values, default=1.0) + 0.05))
    box = (60, 270, WIDTH - 130, 40)
    lo, hi = math.log(sizes[0]), math.log(sizes[-1])
    hi = hi if hi > lo else lo + 1.0
    sx = lambda v: box[0] + 10 + (math.log(v) - lo) / (hi - lo) * (box[2] - box[0] - 20)  # noqa: E731
    sy = lambda v: box[1] - (v - yt[0]) / (yt[-1] - yt[0]) * (box[1] - box[3])  # noqa: E731
    body = _axes(sizes, yt, sx, sy, "labelled train examples (log scale)", y_label, box, fx=lambda t: f"{t:,.0f}")
    k = 0
    for k, (name, pts) in enumerate(curves.items()):
        dx = (k - (len(curves) - 1) / 2) * 4  # side by side, so equal intervals stay visible
        coords = " ".join(f"{sx(p.n) + dx:.1f},{sy(p.score):.1f}" for p in pts)
        body.append(Markup('<polyline points="{p}" fill="none" stroke="{c}" stroke-width="2"/>').format(
            p=coords, c=color(k)))
        for p in pts:
            if p.low is not None and p.high is not None:
                body.append(Markup('<line x1="{x:.1f}" x2="{x:.1f}" y1="{a:.1f}" y2="{b:.1f}" stroke="{c}" '
                                   'stroke-width="1.5"/>').format(x=sx(p.n) + dx, a=sy(p.low), b=sy(p.high),
                                                                  c=color(k)))
            body.append(Markup('<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{c}"/>').format(
                x=sx(p.n) + dx, y=sy(p.score), c=color(k)))
        body.append(Markup('<rect x="{lx}" y="10" width="12" height="12" fill="{c}"/><text x="{tx}" y="20">{t}'
                           '</text>').format(lx=box[0] + k * 150, tx=box[0] + 16 + k * 150, c=color(k),
                                             t=_short(name, 18)))
    for j, (name, p) in enumerate(flat.items(), start=len(curves)):
        if p.low is not None and p.high is not None:
            body.append(Markup('<rect x="{x}" y="{y:.1f}" width="{w}" height="{h:.1f}" fill="{c}" '
                               'fill-opacity="0.12"/>').format(x=box[0], y=sy(p.high), w=box[2] - box[0],
                                                               h=max(sy(p.low) - sy(p.high), 1.0), c=color(j)))
        body.append(Markup('<line x1="{a}" x2="{b}" y1="{y:.1f}" y2="{y:.1f}" stroke="{c}" stroke-width="2" '
                           'stroke-dasharray="6 4"/><text x="{tx}" y="{y:.1f}" dy="4" fill="{c}">{t}</text>')
                    .format(a=box[0], b=box[2], y=sy(p.score), c=color(j), tx=box[2] + 6, t=_short(name, 20)))
    for m, at in enumerate(sorted(x for x in marks if x is not None and sizes[0] <= x <= sizes[-1])):
        body.append(Markup('<line x1="{x:.1f}" x2="{x:.1f}" y1="{a}" y2="{b}" stroke="#555" '
                           'stroke-dasharray="2 3"/><text x="{x:.1f}" y="{ty}" text-anchor="middle" '
                           'fill="#333">≈{t}</text>').format(x=sx(at), a=box[1], b=box[3], ty=box[3] - 4 - 12 * (m % 2),
                                                             t=about(at)))
    return _svg(310, title, body)


def learning_curve(rows: pd.DataFrame, metric: str = "score") -> dict[str, Any] | None:
    """One task's learning curve for the report: its chart, crossover sentences and a
    table of scores by size; None when no strategy of the task ran at several sizes."""
    curves, flat = task_curves(rows)
    if not curves:
        return None
    found = sentences(curves, flat)
    task = str(rows["task"].iloc[0])
    sizes = sorted({p.n for pts in curves.values() for p in pts})
    table = []
    for name, pts in curves.items():
        by_n = {p.n: p for p in pts}
        table.append({"name": name, "cells": [fmt_point(by_n.get(n)) for n in sizes]})
    for name, p in flat.items():
        table.append({"name": f"{name} (no train data)", "cells": [fmt_point(p)] * len(sizes)})
    return {"sizes": sizes, "size_labels": [f"n={n:,}" for n in sizes], "sentences": [s for _, s in found],
            "table": table,
            "chart": chart(curves, flat, [at for at, _ in found], f"{metric} against labelled examples, {task}",
                           metric)}


def fmt_point(p: Point | None) -> str:
    if p is None:
        return "–"
    ci = "" if p.low is None or p.high is None else f" [{p.low:.2f}, {p.high:.2f}]"
    return f"{p.score:.3f}{ci}"


def curve_markdown(rows: pd.DataFrame, escape) -> str | None:
    """The learning curve for summary.md: the crossover sentences and the scores by size."""
    found = learning_curve(rows)
    if found is None:
        return None
    lines = ["Learning curve (score [95% CI] by labelled train examples; crossovers interpolated on a log "
             "scale):", ""]
    lines += [f"- {escape(s)}" for s in found["sentences"]]
    lines += ["", "| strategy | " + " | ".join(found["size_labels"]) + " |",
              "|---|" + "---:|" * len(found["sizes"])]
    lines += [f"| {escape(r['name'])} | " + " | ".join(r["cells"]) + " |" for r in found["table"]]
    return "\n".join(lines)

"""The decision charts of report.html and compare.html, as inline SVG.

- `pareto`: score (with its interval) against cost per 1,000 queries; cells that another
  cell beats on both axes are drawn hollow and labelled "dominated".
- `latency_strips`: each strategy's per-query latencies as a box (quartiles, whiskers
  at p5/p95) over the individual queries.
- `cost_lines`: total cost (prepare once + per-query cost) against query volume, with
  the break-even volumes marked where two lines cross.
- `forest`: score deltas with their intervals against a tolerance line (compare).
Built from `reports.svg`'s primitives, so every label is escaped by `Markup.format`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from markupsafe import Markup

from reports.svg import WIDTH, _axes, _short, _svg, color, nice_ticks, tick

GREY = "#999"
BAD = "#c62828"


def _finite(*values: float | None) -> bool:
    return all(v is not None and isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def money(v: float) -> str:
    return "$0" if v == 0 else f"${v:,.0f}" if abs(v) >= 100 else f"${v:.3g}"


def volume(v: float) -> str:
    """"5.82k", "1.2M", "169": a query count short enough for an axis or a marker."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.0f}"


def dominated(points: Sequence[tuple[float | None, float | None]]) -> list[int | None]:
    """For each (cost, score): the index of a point that dominates it (no more expensive
    and at least as accurate, better on one of the two), else None. Points with a
    missing value neither dominate nor are dominated."""
    out: list[int | None] = []
    for i, (ci, si) in enumerate(points):
        hit = None
        if _finite(ci, si):
            for j, (cj, sj) in enumerate(points):
                if j != i and _finite(cj, sj) and cj <= ci and sj >= si and (cj < ci or sj > si):
                    hit = j
                    break
        out.append(hit)
    return out


_TEXT_W, _LINE_H = 6.2, 13.0  # approximate width of a character and height of a line at the charts' font size


def _free_line(left: float, width: float, baseline: float, placed: list[tuple[float, float, float]]) -> float:
    """A baseline at or below `baseline` where a label of `width` overlaps none placed
    before (points close in cost and score would print their labels over each other)."""
    while any(left < r and l < left + width and abs(baseline - b) < _LINE_H for l, r, b in placed):
        baseline += _LINE_H
    placed.append((left, left + width, baseline))
    return baseline


def pareto(items: Sequence[tuple[str, float | None, float | None, float | None, float | None]], title: str,
           y_label: str, refs: Sequence[tuple[str, float]] = ()) -> Markup:
    """items: (label, cost per 1k, score, ci_low, ci_high), in the task's strategy order;
    refs: (label, score) of trivial baselines, drawn as dotted horizontal reference lines."""
    pts = [(i, *it) for i, it in enumerate(items) if _finite(it[1], it[2])]
    dom = dominated([(it[1], it[2]) for it in items])
    box = (70, 260, WIDTH - 20, 25)
    xt = nice_ticks(0.0, max([p[2] for p in pts], default=1.0) * 1.15 or 1.0)
    yt = nice_ticks(0.0, max([1.0, *[p[5] for p in pts if _finite(p[5])]]))
    sx = lambda v: box[0] + v / xt[-1] * (box[2] - box[0])  # noqa: E731
    sy = lambda v: box[1] - (v - yt[0]) / (yt[-1] - yt[0]) * (box[1] - box[3])  # noqa: E731
    body = _axes(xt, yt, sx, sy, "cost per 1,000 queries", y_label, box, fx=money)
    frontier = sorted((p for p in pts if dom[p[0]] is None), key=lambda p: p[2])
    if len(frontier) > 1:
        coords = " ".join(f"{sx(p[2]):.1f},{sy(p[3]):.1f}" for p in frontier)
        body.append(Markup('<polyline points="{}" fill="none" stroke="#555" stroke-dasharray="4 3"/>').format(coords))
    placed: list[tuple[float, float, float]] = []  # label boxes so far: (left, right, baseline)
    for i, label, cost, score, low, high in pts:
        x, y = sx(cost), sy(score)
        if _finite(low, high):
            body.append(Markup('<line x1="{x:.1f}" x2="{x:.1f}" y1="{a:.1f}" y2="{b:.1f}" stroke="{c}" '
                               'stroke-width="2"/>').format(x=x, a=sy(low), b=sy(high), c=color(i)))
        is_dom = dom[i] is not None
        fill, text = ("white", f"{_short(label, 18)} (dominated)") if is_dom else (color(i), _short(label, 22))
        near_right = x > box[2] - 170
        tx = x + (-8 if near_right else 8)
        ty = _free_line(tx - (_TEXT_W * len(text) if near_right else 0), _TEXT_W * len(text), y - 9, placed)
        body.append(Markup('<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{f}" stroke="{c}" stroke-width="2" '
                           'class="{k}"/><text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{a}"{g}>{t}</text>')
                    .format(x=x, y=y, ty=ty, f=fill, c=color(i), k="dominated" if is_dom else "frontier",
                            tx=tx, a="end" if near_right else "start",
                            g=Markup(' fill="#666"') if is_dom else "", t=text))
    for label, score in refs:
        if _finite(score) and yt[0] <= score <= yt[-1]:
            body.append(Markup('<line x1="{a}" x2="{b}" y1="{y:.1f}" y2="{y:.1f}" stroke="{c}" stroke-dasharray="2 3" '
                               'class="baseline"/><text x="{tx}" y="{ty:.1f}" text-anchor="end" fill="{c}">{t}</text>')
                        .format(a=box[0], b=box[2], y=sy(score), c=GREY, tx=box[2] - 4, ty=sy(score) - 4,
                                t=f"{_short(label, 20)} {score:.2f}"))
    if not pts:
        body.append(Markup('<text x="{}" y="140" fill="#888">no cost or score to plot</text>').format(box[0] + 10))
    return _svg(300, title, body)


def latency_strips(series: Sequence[tuple[str, Sequence[float]]], title: str) -> Markup:
    """One row per (label, latencies in ms): p5-p95 whisker, p25-p75 box, median tick,
    and every query as a faint dot (spread vertically by its rank, not at random)."""
    left, row, top = 120, 44, 10
    clean = [(label, np.asarray([v for v in vals if _finite(v)], dtype=float)) for label, vals in series]
    vmax = max([float(v.max()) for _, v in clean if v.size] or [1.0])
    xt = nice_ticks(0.0, vmax * 1.05)
    height = top + row * max(len(clean), 1) + 45
    box = (left, height - 40, WIDTH - 20, top)
    sx = lambda v: left + v / xt[-1] * (box[2] - left)  # noqa: E731
    body = _axes(xt, [], sx, None, "latency per query (ms)", "", box)
    for i, (label, vals) in enumerate(clean):
        mid = top + i * row + row / 2
        body.append(Markup('<text x="{x}" y="{y:.1f}" text-anchor="end" dy="4">{t}</text>').format(
            x=left - 8, y=mid, t=_short(label, 16)))
        if not vals.size:
            body.append(Markup('<text x="{x}" y="{y:.1f}" dy="4" fill="#888">n/a</text>').format(x=left + 6, y=mid))
            continue
        p5, p25, p50, p75, p95 = np.percentile(vals, [5, 25, 50, 75, 95])
        for k, v in enumerate(np.sort(vals)):
            body.append(Markup('<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{c}" fill-opacity="0.35"/>').format(
                x=sx(v), y=mid - 12 + (k * 7 % 25), c=color(i)))
        body.append(Markup('<line x1="{a:.1f}" x2="{b:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#333"/>'
                           '<rect x="{q1:.1f}" y="{yt:.1f}" width="{w:.1f}" height="16" fill="{c}" '
                           'fill-opacity="0.5" stroke="#333"/>'
                           '<line x1="{m:.1f}" x2="{m:.1f}" y1="{yt:.1f}" y2="{yb:.1f}" stroke="#000" '
                           'stroke-width="2"/>').format(
            a=sx(p5), b=sx(p95), y=mid, q1=sx(p25), w=max(sx(p75) - sx(p25), 1.0), yt=mid - 8, yb=mid + 8,
            c=color(i), m=sx(p50)))
    return _svg(height, title, body)


def cost_lines(lines: Sequence[tuple[str, float | None, float | None]],
               crossings: Sequence[tuple[float, str]], title: str) -> Markup:
    """lines: (label, prepare $, $ per query); crossings: (queries, text) break-even
    volumes to mark. The volume axis runs to twice the largest crossing, so each one
    sits inside the chart with room to see which line wins after it."""
    usable = [(i, label, f, q) for i, (label, f, q) in enumerate(lines) if _finite(f, q)]
    marks = [(q, t) for q, t in crossings if _finite(q) and q > 0]
    q_max = max([q for q, _ in marks], default=50_000.0) * 2 or 1.0
    xt = nice_ticks(0.0, q_max)
    y_top = max([f + q * xt[-1] for _, _, f, q in usable], default=1.0) or 1.0
    yt = nice_ticks(0.0, y_top)
    box = (70, 260, WIDTH - 20, 30)
    sx = lambda v: box[0] + v / xt[-1] * (box[2] - box[0])  # noqa: E731
    sy = lambda v: box[1] - v / yt[-1] * (box[1] - box[3])  # noqa: E731
    body = _axes(xt, yt, sx, sy, "queries served", "total cost", box, fx=volume, fy=money)
    for n, (i, label, fixed, per_q) in enumerate(usable):
        body.append(Markup('<line x1="{a:.1f}" y1="{b:.1f}" x2="{c:.1f}" y2="{d:.1f}" stroke="{k}" '
                           'stroke-width="2"/><rect x="{lx}" y="8" width="12" height="12" fill="{k}"/>'
                           '<text x="{tx}" y="18">{t}</text>').format(
            a=sx(0), b=sy(fixed), c=sx(xt[-1]), d=sy(fixed + per_q * xt[-1]), k=color(i),
            lx=box[0] + n * 150, tx=box[0] + 16 + n * 150, t=_short(label, 18)))
    for n, (q, text) in enumerate(sorted(marks)):
        # Labels stack down from the top, one line each, so close crossings stay legible.
        body.append(Markup('<line x1="{x:.1f}" x2="{x:.1f}" y1="{a}" y2="{b}" stroke="#555" '
                           'stroke-dasharray="3 3"/><text x="{tx:.1f}" y="{ty}" fill="#333">{t}</text>').format(
            x=sx(q), a=box[1], b=box[3], tx=sx(q) + 4, ty=box[3] + 14 + 14 * n, t=_short(text, 34)))
    if not usable:
        body.append(Markup('<text x="{}" y="140" fill="#888">no costs to plot</text>').format(box[0] + 10))
    return _svg(300, title, body)


def forest(items: Sequence[tuple[str, float | None, float | None, float | None, bool]], tolerance: float,
           title: str) -> Markup:
    """items: (label, delta, ci_low, ci_high, regressed); a line at 0 and a dashed one at
    -tolerance: an interval wholly left of the dashed line is a regression."""
    left, row, top = 230, 24, 10
    vals = [v for _, d, lo, hi, _ in items for v in (d, lo, hi) if _finite(v)] + [-tolerance, tolerance]
    span = max(abs(v) for v in vals) * 1.1
    xt = nice_ticks(-span, span)
    height = top + row * max(len(items), 1) + 45
    box = (left, height - 40, WIDTH - 20, top)
    sx = lambda v: left + (v - xt[0]) / (xt[-1] - xt[0]) * (box[2] - left)  # noqa: E731
    body = _axes(xt, [], sx, None, "score change (new − baseline)", "", box, fx=lambda t: f"{tick(t)}")
    body.append(Markup('<line x1="{x:.1f}" x2="{x:.1f}" y1="{a}" y2="{b}" stroke="#333"/>'
                       '<line x1="{t:.1f}" x2="{t:.1f}" y1="{a}" y2="{b}" stroke="{r}" stroke-dasharray="4 3"/>')
                .format(x=sx(0), t=sx(-tolerance), a=box[1], b=top, r=BAD))
    for i, (label, d, lo, hi, bad) in enumerate(items):
        y = top + i * row + row / 2
        c = BAD if bad else "#4269d0"
        body.append(Markup('<text x="{x}" y="{y:.1f}" text-anchor="end" dy="4"{f}>{t}</text>').format(
            x=left - 8, y=y, t=_short(label, 34), f=Markup(' fill="#c62828"') if bad else ""))
        if _finite(lo, hi):
            body.append(Markup('<line x1="{a:.1f}" x2="{b:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{c}" '
                               'stroke-width="2"/>').format(a=sx(lo), b=sx(hi), y=y, c=c))
        if _finite(d):
            body.append(Markup('<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{c}"/>').format(x=sx(d), y=y, c=c))
    return _svg(height, title, body)

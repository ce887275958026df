"""Small inline SVG charts: horizontal bars, a labelled scatter, loss lines.

No plotting library: the report must be one file with no scripts, and matplotlib is not
a dependency. Every label comes from data, so markup is built with `Markup.format`,
which escapes each argument; colours use SVG presentation attributes (not `style=`),
which the report's Content-Security-Policy allows without 'unsafe-inline'.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

from markupsafe import Markup

PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5"]
WIDTH = 600
FONT = Markup('font-family="system-ui, sans-serif" font-size="12"')


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten)."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def _svg(height: int, title: str, body: Iterable[Markup]) -> Markup:
    head = Markup('<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
                  'role="img" {font}><title>{t}</title>').format(w=WIDTH, h=height, font=FONT, t=title)
    return head + Markup("").join(body) + Markup("</svg>")


def bar_chart(items: Sequence[tuple[str, float]], title: str, vmax: float = 1.0) -> Markup:
    """Horizontal bars, one per (label, value); missing values draw as 'n/a'."""
    left, right, row = 170, 60, 26
    finite = [v for _, v in items if v is not None and math.isfinite(v)]
    vmax = max([vmax, *finite]) or 1.0
    span = WIDTH - left - right
    body = []
    for i, (label, value) in enumerate(items):
        y = 10 + i * row
        body.append(Markup('<text x="{x}" y="{y}" text-anchor="end">{t}</text>').format(
            x=left - 8, y=y + 15, t=_short(label)))
        if value is None or not math.isfinite(value):
            body.append(Markup('<text x="{x}" y="{y}" fill="#888">n/a</text>').format(x=left + 4, y=y + 15))
            continue
        w = max(span * value / vmax, 1.0)
        body.append(Markup('<rect x="{x}" y="{y}" width="{w:.1f}" height="{h}" fill="{c}"/>'
                           '<text x="{tx:.1f}" y="{ty}">{v:.3f}</text>').format(
            x=left, y=y + 2, w=w, h=row - 8, c=color(i), tx=left + w + 4, ty=y + 15, v=value))
    return _svg(20 + row * max(len(items), 1), title, body)


def tick(t: float) -> str:
    return f"{round(t, 6):g}"


def _axes(xt: list[float], yt: list[float], sx, sy, x_label: str, y_label: str,
          box: tuple[int, int, int, int], fx=tick, fy=tick) -> list[Markup]:
    """Frame, grid, tick labels (formatted by `fx`/`fy`) and axis titles."""
    x0, y0, x1, y1 = box
    out = [Markup('<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#bbb"/>').format(
        x0, y1, x1 - x0, y0 - y1)]
    for t in xt:
        out.append(Markup('<line x1="{x:.1f}" x2="{x:.1f}" y1="{a}" y2="{b}" stroke="#eee"/>'
                          '<text x="{x:.1f}" y="{ty}" text-anchor="middle">{t}</text>').format(
            x=sx(t), a=y0, b=y1, ty=y0 + 15, t=fx(t)))
    for t in yt:
        out.append(Markup('<line x1="{a}" x2="{b}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                          '<text x="{tx}" y="{y:.1f}" text-anchor="end" dy="4">{t}</text>').format(
            a=x0, b=x1, y=sy(t), tx=x0 - 5, t=fy(t)))
    out.append(Markup('<text x="{x}" y="{y}" text-anchor="middle">{t}</text>').format(
        x=(x0 + x1) // 2, y=y0 + 32, t=x_label))
    out.append(Markup('<text x="14" y="{y}" text-anchor="middle" transform="rotate(-90 14 {y})">{t}</text>')
               .format(y=(y0 + y1) // 2, t=y_label))
    return out


def _scales(xs: list[float], ys: list[float], box, y_floor: float | None = 0.0, x_pad: float = 1.05):
    x0, y0, x1, y1 = box
    xt = nice_ticks(0.0, max(xs) * x_pad if xs and max(xs) > 0 else 1.0)
    if y_floor is not None:  # scores: keep zero in view so bar heights compare honestly
        lo, hi = y_floor, max([*ys, 1.0])
    else:  # losses: fit the data, padding a flat line so it has a range
        lo, hi = min(ys, default=0.0), max(ys, default=1.0)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
    yt = nice_ticks(lo, hi)
    sx = lambda v: x0 + (v - xt[0]) / (xt[-1] - xt[0]) * (x1 - x0)  # noqa: E731
    sy = lambda v: y0 - (v - yt[0]) / (yt[-1] - yt[0]) * (y0 - y1)  # noqa: E731
    return xt, yt, sx, sy


def scatter(points: Sequence[tuple[str, float, float]], title: str, x_label: str, y_label: str) -> Markup:
    """One labelled dot per (label, x, y); points with a missing value are left out."""
    # Keep each point's position in `points` so its colour matches the bar chart's.
    pts = [(i, label, x, y) for i, (label, x, y) in enumerate(points)
           if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    box = (60, 260, WIDTH - 20, 25)
    xt, yt, sx, sy = _scales([p[2] for p in pts], [p[3] for p in pts], box)
    body = _axes(xt, yt, sx, sy, x_label, y_label, box)
    for i, label, x, y in pts:
        near_right = sx(x) > box[2] - 150  # put the label left of the dot so it stays inside
        body.append(Markup('<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{c}"/>'
                           '<text x="{tx:.1f}" y="{y:.1f}" dy="-8" text-anchor="{a}">{t}</text>').format(
            x=sx(x), y=sy(y), c=color(i), tx=sx(x) + (-6 if near_right else 6),
            a="end" if near_right else "start", t=_short(label, 22)))
    return _svg(300, title, body)


def line_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], title: str,
               x_label: str, y_label: str) -> Markup:
    """One polyline per (name, [(x, y), ...]) with a legend; the y axis fits the data."""
    clean = [(name, [(x, y) for x, y in pts if x is not None and y is not None
                     and math.isfinite(x) and math.isfinite(y)]) for name, pts in series]
    xs = [x for _, pts in clean for x, _ in pts]
    ys = [y for _, pts in clean for _, y in pts]
    box = (60, 260, WIDTH - 20, 30)
    xt, yt, sx, sy = _scales(xs, ys, box, y_floor=None, x_pad=1.0)
    body = _axes(xt, yt, sx, sy, x_label, y_label, box)
    for i, (name, pts) in enumerate(clean):
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        body.append(Markup('<polyline points="{p}" fill="none" stroke="{c}" stroke-width="2"/>'
                           '<rect x="{lx}" y="8" width="12" height="12" fill="{c}"/>'
                           '<text x="{tx}" y="18">{n}</text>').format(
            p=coords, c=color(i), lx=70 + i * 140, tx=86 + i * 140, n=_short(name, 18)))
        # A single point is invisible as a line; a sparse series (validation loss every
        # eval_every steps) reads better with its measured points marked.
        for x, y in pts if len(pts) <= 12 else []:
            body.append(Markup('<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>').format(sx(x), sy(y), color(i)))
    return _svg(300, title, body)

"""The history's trend, as `bench history` prints it and as report.html and
compare.html chart it.

The rows come from `bench.history.trend` (the results database, outside the run
folder): the caller reads them and passes them in, so a report still renders from a
copied run folder alone, and without a database the trend section is simply absent.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from markupsafe import Markup
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reports.charts import money
from reports.costs import fmt_usd
from reports.svg import WIDTH, _axes, _short, _svg, color, nice_ticks, tick

STYLES = {"better": "green", "worse": "bold red", "same": None}
HEADERS = ("run", "finished", "commit", "score [95% CI]", "p95", "$/1k", "vs prev")  # p95 in ms


def _date(stamp: Any) -> str:
    text = str(stamp or "–")
    return text[:16].replace("T", " ")


def _commit(r: dict[str, Any]) -> str:
    commit = str(r.get("git_commit") or "–")[:7]
    return commit + ("+" if r.get("git_dirty") else "")  # "+": uncommitted changes


def _score(r: dict[str, Any]) -> str:
    if r.get("score") is None:
        return str(r.get("status") or "–")
    ci = "" if r.get("score_ci_low") is None else f" [{r['score_ci_low']:.3f},{r['score_ci_high']:.3f}]"
    return f"{r['score']:.3f}{ci}"


def display_row(r: dict[str, Any]) -> list[str]:
    run = str(r.get("run")) + (f" (baseline {r['baseline']})" if r.get("baseline") else "")
    p95 = "–" if r.get("latency_p95_ms") is None else f"{r['latency_p95_ms']:.0f}"
    # Month, day and time: with the year the table no longer fits 80 columns.
    return [run, _date(r.get("finished_at"))[5:], _commit(r), _score(r), p95, fmt_usd(r.get("cost_per_1k_usd")),
            str(r.get("direction", "–"))]


def _cells(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["task"], r["strategy"], r["model"]), []).append(r)
    return out


def trend_tables(rows: Sequence[dict[str, Any]]) -> list[Table]:
    """One table per cell (task · strategy · model), its runs oldest first."""
    tables = []
    for (task, strategy, model), group in _cells(rows).items():
        table = Table(title=f"{task} · {strategy} · {model}", title_justify="left", title_style="bold",
                      box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, padding=(0, 1))
        for header in HEADERS:
            table.add_column(header, overflow="fold", no_wrap=header != "run",
                             min_width=6 if header == "run" else None,
                             justify="right" if header in ("p95", "$/1k") else "left")
        for r in group:
            values = display_row(r)
            table.add_row(*[Text(v) for v in values[:-1]],  # Text: data is never console markup
                          Text(values[-1], style=STYLES.get(values[-1])))
        tables.append(table)
    return tables


def print_trend(rows: Sequence[dict[str, Any]], console: Console | None = None, where: str = "") -> None:
    console = console or Console()
    if not rows:
        console.print(Text(f"No recorded runs match{f' in {where}' if where else ''}."))
        return
    for table in trend_tables(rows):
        console.print(table)
    worse = [r for r in _latest(rows) if r.get("direction") == "worse"]
    runs = len({r["run_key"] for r in rows})
    line = f"{runs} run(s), {len(_cells(rows))} cell(s)" + (f" in {where}" if where else "") + ". "
    line += (f"Worse than the run before, beyond the intervals: {len(worse)} cell(s) in the latest run"
             if worse else "No cell's latest run is worse than the one before, beyond the intervals.")
    console.print(Text(line, style="bold red" if worse else "bold green"))


def _latest(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [group[-1] for group in _cells(rows).values()]


def trend_chart(series: Sequence[tuple[str, Sequence[tuple[int, float | None, float | None, float | None]]]],
                runs: Sequence[str], title: str, y_label: str, fy=tick, current: int | None = None) -> Markup:
    """series: (label, [(run index, value, ci_low, ci_high)]); runs: the x axis' run
    labels, oldest first. Intervals are drawn as bars; `current` marks a run."""
    box_ = (70, 250, WIDTH - 20, 30)
    vals = [v for _, pts in series for _, *vs in pts for v in vs if v is not None]
    yt = nice_ticks(0.0, max([*vals, 1e-9]) * 1.05)
    n = max(len(runs), 2)
    sx = lambda i: box_[0] + 20 + i / (n - 1) * (box_[2] - box_[0] - 40)  # noqa: E731
    sy = lambda v: box_[1] - v / yt[-1] * (box_[1] - box_[3])  # noqa: E731
    step = max(1, -(-len(runs) // 6))  # at most ~6 run labels fit under the axis
    body = _axes(list(range(0, len(runs), step)), yt, sx, sy, "recorded runs (finish date, UTC)", y_label, box_,
                 fx=lambda i: _short(runs[int(i)], 14), fy=fy)
    if current is not None:
        body.append(Markup('<line x1="{x:.1f}" x2="{x:.1f}" y1="{a}" y2="{b}" stroke="#555" stroke-dasharray="3 3"/>'
                           '<text x="{x:.1f}" y="{ty}" text-anchor="middle" fill="#555">this run</text>').format(
            x=sx(current), a=box_[1], b=box_[3], ty=box_[3] - 4))
    for k, (label, pts) in enumerate(series):
        pts = [p for p in pts if p[1] is not None]
        c = color(k)
        body.append(Markup('<rect x="{lx}" y="6" width="12" height="12" fill="{c}"/><text x="{tx}" y="16">{t}</text>')
                    .format(lx=box_[0] + k * 150, tx=box_[0] + 16 + k * 150, c=c, t=_short(label, 18)))
        if len(pts) > 1:
            body.append(Markup('<polyline points="{p}" fill="none" stroke="{c}" stroke-width="2"/>').format(
                p=" ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v, *_ in pts), c=c))
        for i, v, lo, hi in pts:
            if lo is not None and hi is not None:
                body.append(Markup('<line x1="{x:.1f}" x2="{x:.1f}" y1="{a:.1f}" y2="{b:.1f}" stroke="{c}" '
                                   'stroke-opacity="0.5" stroke-width="4"/>').format(x=sx(i), a=sy(lo), b=sy(hi), c=c))
            body.append(Markup('<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{c}"/>').format(x=sx(i), y=sy(v), c=c))
    return _svg(290, title, body)


def trend_section(rows: Sequence[dict[str, Any]], task: str, cells: Iterable[tuple[str, str]] | None = None,
                  current_key: str | None = None) -> dict[str, Any] | None:
    """A task's score and cost charts over the recorded runs, or None with fewer than
    two runs (one point is not a trend). `cells`: the (strategy, model) pairs to show."""
    wanted = set(cells) if cells is not None else None
    mine = [r for r in rows if r["task"] == task and (wanted is None or (r["strategy"], r["model"]) in wanted)]
    order: dict[str, tuple[str, str]] = {}  # run key -> (name, axis label: its finish date)
    for r in sorted(mine, key=lambda r: (str(r.get("finished_at")), str(r.get("recorded_at")))):
        order.setdefault(r["run_key"], (str(r["run"]), _date(r.get("finished_at"))[5:] or str(r["run"])))
    if len(order) < 2:
        return None
    index = {key: i for i, key in enumerate(order)}
    names, axis = [n for n, _ in order.values()], [a for _, a in order.values()]
    groups = _cells(mine)
    several = len({m for _, _, m in groups}) > 1
    labels = {k: f"{k[1]} · {k[2]}" if several else k[1] for k in groups}
    score = [(labels[k], [(index[r["run_key"]], r.get("score"), r.get("score_ci_low"), r.get("score_ci_high"))
                          for r in g]) for k, g in groups.items()]
    cost = [(labels[k], [(index[r["run_key"]], r.get("cost_per_1k_usd"), None, None) for r in g])
            for k, g in groups.items()]
    current = index.get(current_key) if current_key else None
    metric = next((r["metric"] for r in mine if r.get("metric")), "score")
    priced = any(v is not None for _, pts in cost for _, v, _, _ in pts)
    return {"runs": len(order), "first": names[0], "last": names[-1],
            "score_chart": trend_chart(score, axis, f"{metric} per recorded run, {task}", metric, current=current),
            "cost_chart": trend_chart(cost, axis, f"cost per 1,000 queries per recorded run, {task}",
                                      "$ per 1k queries", fy=money, current=current) if priced else None}

"""The summary as a rich terminal table, best score per task in bold, then per task
the paired comparisons and break-even volumes, and the prices costs came from.

Text from data is wrapped in `rich.text.Text`, never parsed as console markup, so a
task name or error holding "[bold]" or "[/]" prints as itself instead of breaking.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reports.compare_pairs import describe
from reports.costs import fmt_usd
from reports.frame import BASELINE, best_index, is_missing
from reports.latency_pairs import fmt_latency_pair
from reports.markdown import price_line, task_records

# (column, header, format spec, None for text, or "usd"; justify). Seconds and memory
# are left to the CSV and HTML, and a cell's status shows in its score cell (in red, its
# error below the table): the terminal keeps what a decision needs in 80 columns.
TERMINAL_COLUMNS = [
    ("task", "task", None, "left"),
    ("strategy", "strategy", None, "left"),
    ("model", "model", None, "left"),
    ("score", "score [95% CI]", "{:.2f}", "right"),
    ("n", "n", "{:.0f}", "right"),
    ("latency_p50_ms", "p50 ms", "{:.0f}", "right"),
    ("latency_p95_ms", "p95 ms", "{:.0f}", "right"),
    ("prompt_tokens_mean", "tok in", "{:.0f}", "right"),
    ("prepare_cost_usd", "prep $", "usd", "right"),
    ("cost_per_1k_usd", "$/1k q", "usd", "right"),
    ("forgetting", "forget", "{:+.2f}", "right"),  # probe accuracy lost by training (training_facts.py)
]


def score_text(row: Any) -> str:
    """"0.68 [0.56,0.80]": the score and its interval, compact enough for a terminal;
    a cell with no score shows its status ("failed") instead."""
    score, low, high = row.get("score"), row.get("score_ci_low"), row.get("score_ci_high")
    if is_missing(score):
        return "–" if row.get("status") in (None, "ok") else str(row.get("status"))
    if is_missing(low) or is_missing(high):
        return f"{float(score):.2f}"
    return f"{float(score):.2f} [{float(low):.2f},{float(high):.2f}]"


def _cell(value: Any, spec: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if spec is None:
        return str(value)
    if spec == "usd":
        return fmt_usd(value, floor=0.001)  # exact values are in summary.csv
    try:
        return spec.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def summary_table(summary: pd.DataFrame, title: str | None = None) -> Table:
    show_model = summary["model"].nunique() > 1 if not summary.empty else False
    columns = [c for c in TERMINAL_COLUMNS if c[0] != "model" or show_model]
    # A light box and names that fold keep the numbers readable in an 80-column terminal.
    table = Table(title=Text(title) if title else None, box=box.SIMPLE_HEAD, header_style="bold",
                  pad_edge=False, padding=0)
    for col, header, spec, justify in columns:
        if spec is None:
            table.add_column(header, justify=justify, overflow="fold", max_width=24 if col == "task" else 16,
                             min_width={"task": 10, "strategy": 9}.get(col))
        else:
            table.add_column(header, justify=justify, no_wrap=True, min_width=len(header))
    best = {best_index(rows[rows["status"] == "ok"], "score") for _, rows in summary.groupby("task", sort=False)}
    previous_task = None
    for idx, row in summary.iterrows():
        cells = []
        for col, _, spec, _ in columns:
            text = Text(score_text(row) if col == "score" else _cell(row.get(col), spec))
            if col == "task" and row["task"] == previous_task:
                text = Text("")  # the task name once per group reads as a heading
            elif row.get("status") == BASELINE:
                text.stylize("dim")  # a reference row: what a strategy must beat
            elif col == "score" and row.get("status") != "ok":
                text.stylize("red")  # failed, partial or incomplete
            elif col == "score" and idx in best:
                text.stylize("bold")
            cells.append(text)
        # A rule between tasks keeps each task's rows visually together.
        table.add_row(*cells, end_section=_last_of_task(summary, idx))
        previous_task = row["task"]
    return table


def _last_of_task(summary: pd.DataFrame, idx: Any) -> bool:
    pos = summary.index.get_loc(idx)
    return pos + 1 < len(summary) and summary.iloc[pos + 1]["task"] != summary.iloc[pos]["task"]


def print_summary(summary: pd.DataFrame, console: Console | None = None, title: str | None = None,
                  comparisons: pd.DataFrame | None = None, break_even: pd.DataFrame | None = None,
                  prices: dict[str, Any] | None = None, latency: pd.DataFrame | None = None) -> None:
    console = console or Console()
    if summary.empty:
        console.print(Text("No results in this run."))
        return
    console.print(summary_table(summary, title=title))
    # Errors are long; below the table they are readable and keep the columns narrow.
    for _, row in summary[summary["error"].notna()].iterrows():
        line = Text(f"{row['task']} / {row['strategy']} / {row['model']}: {row['status']}: ", style="red")
        line.append(str(row["error"])[:500])
        console.print(line)
    for task in dict.fromkeys(summary["task"]):
        lines = [describe(c) for c in task_records(comparisons, task)]
        lines += [f"latency {fmt_latency_pair(c)}" for c in task_records(latency, task)]
        lines += [f"break-even {b['a']} vs {b['b']}: {b['meaning']}" for b in task_records(break_even, task)]
        for line in lines:
            console.print(Text(f"{task}: {line}"))
    if prices and prices.get("hardware"):
        console.print(Text(price_line(prices), style="dim"))


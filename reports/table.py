"""The summary as a rich terminal table, best score per task in bold.

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

from reports.frame import best_index

# (column, header, format spec or None for text, justify)
TERMINAL_COLUMNS = [
    ("task", "task", None, "left"),
    ("strategy", "strategy", None, "left"),
    ("model", "model", None, "left"),
    ("score", "score", "{:.3f}", "right"),
    ("n", "n", "{:.0f}", "right"),
    ("latency_p50_ms", "p50 ms", "{:.0f}", "right"),
    ("latency_p95_ms", "p95 ms", "{:.0f}", "right"),
    ("prompt_tokens_mean", "tok in", "{:.0f}", "right"),
    ("prepare_s", "prep s", "{:.1f}", "right"),
    ("peak_memory_mb", "mem MB", "{:.0f}", "right"),
    ("status", "status", None, "left"),
]


def _cell(value: Any, spec: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if spec is None:
        return str(value)
    try:
        return spec.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def summary_table(summary: pd.DataFrame, title: str | None = None) -> Table:
    show_model = summary["model"].nunique() > 1 if not summary.empty else False
    columns = [c for c in TERMINAL_COLUMNS if c[0] != "model" or show_model]
    # A light box and names that fold keep the numbers readable in an 80-column terminal.
    table = Table(title=Text(title) if title else None, box=box.SIMPLE_HEAD, header_style="bold",
                  pad_edge=False, collapse_padding=True)
    for col, header, spec, justify in columns:
        if spec is None:
            table.add_column(header, justify=justify, overflow="fold", max_width=24 if col == "task" else 16,
                             min_width={"task": 10, "strategy": 9, "status": 6}.get(col))
        else:
            table.add_column(header, justify=justify, no_wrap=True, min_width=len(header))
    best = {best_index(rows[rows["status"] == "ok"], "score") for _, rows in summary.groupby("task", sort=False)}
    previous_task = None
    for idx, row in summary.iterrows():
        cells = []
        for col, _, spec, _ in columns:
            text = Text(_cell(row.get(col), spec))
            if col == "score" and idx in best:
                text.stylize("bold")
            elif col == "status" and row.get("status") != "ok":
                text.stylize("red")
            elif col == "task" and row["task"] == previous_task:
                text = Text("")  # the task name once per group reads as a heading
            cells.append(text)
        # A rule between tasks keeps each task's rows visually together.
        table.add_row(*cells, end_section=_last_of_task(summary, idx))
        previous_task = row["task"]
    return table


def _last_of_task(summary: pd.DataFrame, idx: Any) -> bool:
    pos = summary.index.get_loc(idx)
    return pos + 1 < len(summary) and summary.iloc[pos + 1]["task"] != summary.iloc[pos]["task"]


def print_summary(summary: pd.DataFrame, console: Console | None = None,
                  title: str | None = None) -> None:
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

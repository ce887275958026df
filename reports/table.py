"""The summary as a rich terminal table, best score per task in bold.

Text from data is wrapped in `rich.text.Text`, never parsed as console markup, so a
task name or error holding "[bold]" or "[/]" prints as itself instead of breaking.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
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
    ("prompt_tokens_mean", "prompt tok", "{:.0f}", "right"),
    ("prepare_s", "prepare s", "{:.1f}", "right"),
    ("peak_memory_mb", "memory MB", "{:.0f}", "right"),
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
    table = Table(title=Text(title) if title else None, show_lines=False, header_style="bold")
    for _, header, _, justify in columns:
        table.add_column(header, justify=justify, no_wrap=header != "status")
    best = {best_index(rows, "score") for _, rows in summary.groupby("task", sort=False)}
    previous_task = None
    for idx, row in summary.iterrows():
        cells = []
        for col, _, spec, _ in columns:
            text = Text(_cell(row.get(col), spec))
            if col == "score" and idx in best:
                text.stylize("bold")
            elif col == "status" and row.get("status") != "ok":
                text.stylize("red")
                if isinstance(row.get("error"), str):
                    text.append(f": {row['error'][:80]}")
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

"""A Markdown summary for pull-request comments: one table per task.

Cell text comes from configs and model outputs, so it is escaped: pipes would break
the table, and raw HTML would be rendered (or stripped) by the comment viewer.
"""
from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from reports.frame import best_index

# (column, header, format): format is a str.format spec or None for text.
MD_COLUMNS = [
    ("strategy", "strategy", None),
    ("model", "model", None),
    ("score", "score", "{:.3f}"),
    ("n", "n", "{:.0f}"),
    ("latency_p50_ms", "p50 ms", "{:.0f}"),
    ("latency_p95_ms", "p95 ms", "{:.0f}"),
    ("prompt_tokens_mean", "prompt tok", "{:.0f}"),
    ("prepare_s", "prepare s", "{:.1f}"),
    ("peak_memory_mb", "memory MB", "{:.0f}"),
    ("status", "status", None),
]


def md_escape(value: Any) -> str:
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Backslash-escape what would make tables, code, emphasis or links out of data.
    text = re.sub(r"([|`*_\[\]\\])", r"\\\1", text)
    return " ".join(text.split())  # newlines would end the table row


def fmt_number(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    try:
        return spec.format(float(value))
    except (TypeError, ValueError):
        return md_escape(value)


def task_table(rows: pd.DataFrame) -> str:
    """The Markdown table for one task's summary rows; the best score in bold."""
    columns = [c for c in MD_COLUMNS if c[0] != "model" or rows["model"].nunique() > 1]
    best = best_index(rows, "score")
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" if spec is None else "---:" for _, _, spec in columns) + "|"]
    for idx, row in rows.iterrows():
        cells = []
        for col, _, spec in columns:
            text = md_escape(row.get(col)) if spec is None else fmt_number(row.get(col), spec)
            if col == "score" and idx == best:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(summary: pd.DataFrame, title: str | None = None) -> str:
    parts = [f"## {md_escape(title)}"] if title else []
    if summary.empty:
        parts.append("_No results in this run._")
    for task, rows in summary.groupby("task", sort=False):
        metric = next((m for m in rows["metric"] if isinstance(m, str)), "score")
        parts.append(f"### {md_escape(task)} ({md_escape(metric)})")
        parts.append(task_table(rows))
        failed = rows[rows["error"].notna()]
        for _, row in failed.iterrows():
            parts.append(f"- {md_escape(row['strategy'])} {md_escape(row['status'])}: "
                         f"{md_escape(str(row['error'])[:300])}")
    return "\n\n".join(parts) + "\n"

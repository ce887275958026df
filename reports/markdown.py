"""A Markdown summary for pull-request comments: one table per task, then its pairwise
comparisons and break-even volumes, then the prices the costs came from.

Cell text comes from configs and model outputs, so it is escaped: pipes would break
the table, and raw HTML would be rendered (or stripped) by the comment viewer.
"""
from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from reports.compare_pairs import describe
from reports.costs import fmt_usd
from reports.curves import curve_markdown
from reports.frame import best_index, is_missing
from reports.latency_pairs import fmt_latency_pair
from reports.verdict import display_labels, verdict

# (column, header, format): a str.format spec, None for text, "ci" or "usd" for the helpers.
MD_COLUMNS = [
    ("strategy", "strategy", None),
    ("model", "model", None),
    ("backend", "backend", None),  # shown for served models (vllm, openai) only
    ("scoring", "scoring", None),
    ("score", "score", "{:.3f}"),
    ("score_ci_low", "95% CI", "ci"),
    ("macro_f1", "macro-F1", "{:.3f}"),
    ("n", "n", "{:.0f}"),
    ("latency_p50_ms", "p50 ms", "{:.0f}"),
    ("latency_p95_ms", "p95 ms", "{:.0f}"),
    ("prompt_tokens_mean", "prompt tok", "{:.0f}"),
    ("prepare_s", "prepare s", "{:.1f}"),
    ("prepare_cost_usd", "prepare $", "usd"),
    ("cost_per_1k_usd", "$ / 1k queries", "usd"),
    ("peak_memory_mb", "memory MB", "{:.0f}"),
    # Weight-changing cells (reports/training_facts.py): empty for the others.
    ("forgetting", "forgetting", "{:+.3f}"),
    ("trainable_params", "trainable", "{:.0f}"),
    ("train_tokens_per_s", "train tok/s", "{:.0f}"),
    ("saved_bytes", "saved bytes", "{:.0f}"),
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


def fmt_ci(low: Any, high: Any) -> str:
    return "–" if is_missing(low) or is_missing(high) else f"[{float(low):.2f}, {float(high):.2f}]"


def _format(row: pd.Series, col: str, spec: str | None) -> str:
    if spec is None:
        return md_escape(row.get(col))
    if spec == "ci":
        return fmt_ci(row.get("score_ci_low"), row.get("score_ci_high"))
    return fmt_usd(row.get(col)) if spec == "usd" else fmt_number(row.get(col), spec)


def served_backend(rows: pd.DataFrame) -> bool:
    """Whether a served model (vllm, openai) is among these rows: the tables then say which
    backend served each cell and how it scored labels."""
    return bool("backend" in rows and rows["backend"].dropna().astype(str).ne("hf").any())


def task_table(rows: pd.DataFrame) -> str:
    """The Markdown table for one task's summary rows; the best score in bold."""
    # A model column for one model, or a macro-F1 column for a QA task, would be all "–".
    served = served_backend(rows)
    columns = [c for c in MD_COLUMNS if (c[0] != "model" or rows["model"].nunique() > 1)
               and (c[0] != "macro_f1" or rows["macro_f1"].notna().any())
               and (c[0] not in ("backend", "scoring") or served)]
    best = best_index(rows[rows["status"] == "ok"], "score")
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" if spec is None else "---:" for _, _, spec in columns) + "|"]
    for idx, row in rows.iterrows():
        cells = []
        for col, _, spec in columns:
            text = _format(row, col, spec)
            if col == "score" and idx == best:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def task_records(frame: pd.DataFrame | None, task: Any) -> list[dict[str, Any]]:
    if frame is None or frame.empty:
        return []
    return frame[frame["task"] == task].to_dict(orient="records")


def summary_markdown(summary: pd.DataFrame, title: str | None = None, comparisons: pd.DataFrame | None = None,
                     break_even: pd.DataFrame | None = None, prices: dict[str, Any] | None = None,
                     latency: pd.DataFrame | None = None, decisions: Any = None,
                     updates: pd.DataFrame | None = None) -> str:
    parts = [f"## {md_escape(title)}"] if title else []
    if summary.empty:
        parts.append("_No results in this run._")
    if decisions is not None:  # reports.decide.RunDecisions: the recommendation under constraints leads
        from reports.decide_out import decisions_markdown

        parts.append(decisions_markdown(decisions))
    for task, rows in summary.groupby("task", sort=False):
        metric = next((m for m in rows["metric"] if isinstance(m, str)), "score")
        parts.append(f"### {md_escape(task)} ({md_escape(metric)})")
        # The same one-line verdict that heads report.html: what to choose, and why.
        parts.append(f"**Verdict:** {md_escape(verdict(rows, display_labels(rows), metric, comparisons, break_even, latency))}")
        parts.append(task_table(rows))
        failed = rows[rows["error"].notna()]
        for _, row in failed.iterrows():
            parts.append(f"- {md_escape(row['strategy'])} {md_escape(row['status'])}: "
                         f"{md_escape(str(row['error'])[:300])}")
        curve = curve_markdown(rows, md_escape)  # only when cells ran at several train sizes
        if curve:
            parts.append(curve)
        pairs = [f"- {md_escape(describe(c))}" for c in task_records(comparisons, task)]
        if pairs:
            parts.append("Paired comparisons (95% interval of the difference):\n\n" + "\n".join(pairs))
        lat = [f"- {md_escape(fmt_latency_pair(c))}" for c in task_records(latency, task)]
        if lat:
            parts.append("Latency (batch-1 probes, 95% interval of the p50 ratio):\n\n" + "\n".join(lat))
        breaks = [f"- {md_escape(b['a'])} vs {md_escape(b['b'])}: {md_escape(b['meaning'])}"
                  for b in task_records(break_even, task)]
        if breaks:
            parts.append("Break-even (prepare cost against cost per query):\n\n" + "\n".join(breaks))
        if updates is not None and not updates.empty:
            from reports.update_cost import markdown as update_markdown

            table = update_markdown(updates, task, md_escape)
            if table:
                parts.append(table)
    if prices and prices.get("hardware"):
        parts.append(md_escape(price_line(prices)))
    return "\n\n".join(parts) + "\n"


def price_line(prices: dict[str, Any]) -> str:
    """One sentence naming each price used, its source and date, and the table version."""
    used = [f"{key} at ${p['usd_per_hour']:g}/h ({p['description']}; {p['source']}"
            + (f", {p['as_of']})" if p.get("as_of") else ")") for key, p in prices["hardware"].items()]
    return (f"Prices: {'; '.join(used)}. Price table {prices['version']}. {prices['note']}")

"""Reports read a run folder's stored rows and cells, and nothing else.

This package never imports `strategies/`, torch, faiss or peft: a report must render
from a copied run folder on any machine, and `bench report` must start fast.

    from reports import render_run
    summary = render_run("runs/2024-06-01")   # summary.csv/json/md, comparisons.csv,
                                             # break_even.csv, report.html, terminal table
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from reports.frame import PREFERENCES, RunFrames, load_run
from reports.summary import summarize, write_summary

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

__all__ = ["PREFERENCES", "RunFrames", "load_run", "render_run", "summarize", "write_summary"]


def render_run(run_dir: str | Path, console: "Console | None" = None,
               decide: "Mapping[str, Any] | None" = None) -> "pd.DataFrame":
    """Write summary.csv/.json/.md, comparisons.csv, break_even.csv and report.html;
    print the table with its comparisons and break-even volumes. `decide`: constraints
    from the command line over the run's `decide:` block (reports/decide.py)."""
    from reports.compare_pairs import compare_strategies
    from reports.costs import break_even_frame, price_table
    from reports.decide import decide_run
    from reports.html import render_html
    from reports.latency_pairs import latency_comparisons
    from reports.table import print_summary

    frames = load_run(run_dir)
    summary = summarize(frames, baselines=True)
    comparisons = compare_strategies(frames)  # bootstraps once, shared by every output
    decisions = decide_run(frames, summary, decide)  # None without constraints: today's outputs, unchanged
    write_summary(run_dir, frames=frames, summary=summary, comparisons=comparisons, decisions=decisions)
    render_html(run_dir, frames=frames, summary=summary, comparisons=comparisons, decisions=decisions)
    print_summary(summary, console=console, title=f"adaptbench run {frames.name}", comparisons=comparisons,
                  break_even=break_even_frame(summary, frames), prices=price_table(summary, frames.manifest),
                  latency=latency_comparisons(frames))
    if decisions is not None:
        from rich.console import Console

        from reports.decide_out import print_decisions

        print_decisions(decisions, console or Console())
    return summary

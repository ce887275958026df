"""Reports read a run folder's stored rows and cells, and nothing else.

This package never imports `strategies/`, torch, faiss or peft: a report must render
from a copied run folder on any machine, and `bench report` must start fast.

    from reports import render_run
    summary = render_run("runs/2024-06-01")   # summary.csv/json/md, report.html, terminal table
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reports.frame import PREFERENCES, RunFrames, load_run
from reports.summary import summarize, write_summary

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

__all__ = ["PREFERENCES", "RunFrames", "load_run", "render_run", "summarize", "write_summary"]


def render_run(run_dir: str | Path, console: "Console | None" = None) -> "pd.DataFrame":
    """Write summary.csv, summary.json, summary.md and report.html; print the table."""
    from reports.html import render_html
    from reports.table import print_summary

    frames = load_run(run_dir)
    summary = summarize(frames)
    write_summary(run_dir, frames=frames, summary=summary)
    render_html(run_dir, frames=frames, summary=summary)
    print_summary(summary, console=console, title=f"adaptbench run {frames.name}")
    return summary

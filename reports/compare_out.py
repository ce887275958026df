"""The outputs of `bench compare`: a terminal table, compare.md (for a pull-request
comment), compare.html (self-contained, same escaping and CSP as report.html) and
compare.json (for scripts). All read the frame `reports.regression.compare_runs` made.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.store import RunStore
from reports import charts
from reports.costs import fmt_usd
from reports.frame import RunFrames, is_missing
from reports.markdown import md_escape
from reports.page import render
from reports.regression import Thresholds, headline
from reports.summary import summary_records


def fmt_delta(r: dict[str, Any]) -> str:
    """"-0.050 [-0.083, -0.017]", or "–" when nothing paired."""
    if is_missing(r.get("delta")) or (isinstance(r["delta"], float) and math.isnan(r["delta"])):
        return "–"
    return f"{r['delta']:+.3f} [{r['delta_ci_low']:+.3f}, {r['delta_ci_high']:+.3f}]"


def _num(value: Any, spec: str) -> str:
    return "–" if is_missing(value) else spec.format(float(value))


def _pair(base: Any, new: Any, spec: str, ratio: Any) -> str:
    """"151 → 240 (x1.59)"."""
    if is_missing(base) and is_missing(new):
        return "–"
    text = f"{_num(base, spec)} → {_num(new, spec)}"
    return text if is_missing(ratio) else f"{text} (x{float(ratio):.2f})"


def _usd_pair(base: Any, new: Any, ratio: Any) -> str:
    if is_missing(base) and is_missing(new):
        return "–"
    text = f"{fmt_usd(base)} → {fmt_usd(new)}"
    return text if is_missing(ratio) else f"{text} (x{float(ratio):.2f})"


def display_rows(result: pd.DataFrame) -> list[dict[str, str]]:
    """Each cell's comparison as display strings, shared by every output."""
    out = []
    for r in result.to_dict(orient="records"):
        out.append({"task": str(r["task"]), "strategy": str(r["strategy"]), "model": str(r["model"]),
                    "n": _num(r["n_common"], "{:.0f}"), "score": _pair(r["score_base"], r["score_new"], "{:.3f}", None),
                    "delta": fmt_delta(r),
                    "latency": _pair(r["latency_p50_base_ms"], r["latency_p50_new_ms"], "{:.0f}", r["latency_ratio"]),
                    "cost": _usd_pair(r["cost_per_1k_base_usd"], r["cost_per_1k_new_usd"], r["cost_ratio"]),
                    "status": str(r["status"]), "regression": bool(r["regression"]),
                    "reasons": "; ".join(r["reasons"])})
    return out


HEADERS = [("task", "task"), ("strategy", "strategy"), ("model", "model"), ("n", "n paired"),
           ("score", "score base → new"), ("delta", "Δ score [95% CI]"), ("latency", "p50 ms base → new"),
           ("cost", "$/1k queries base → new"), ("status", "status")]


def thresholds_line(th: Thresholds) -> str:
    return (f"Regression: the score change's 95% interval lies wholly below -{th.tolerance:g}, p50 latency grows "
            f"past x{th.max_latency_ratio:g}, cost per query past x{th.max_cost_ratio:g}, or a cell that finished "
            "in the baseline failed.")


def compare_markdown(result: pd.DataFrame, base: str, new: str, th: Thresholds,
                     decisions: dict | None = None) -> str:
    rows = display_rows(result)
    lines = [f"## adaptbench compare: {md_escape(new)} against {md_escape(base)}", "",
             f"**{md_escape(headline(result))}**", "", md_escape(thresholds_line(th)), "",
             "| " + " | ".join(h for _, h in HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    for r in rows:
        cells = [md_escape(r[k]) for k, _ in HEADERS]
        if r["regression"]:
            cells[-1] = f"**{cells[-1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {md_escape(r['task'])} / {md_escape(r['strategy'])}: {md_escape(r['reasons'])}"
             for r in rows if r["reasons"]]
    if decisions:  # reports/decide_out.py: both runs under the same constraints
        from reports.decide_out import compare_markdown_part

        notes += ["", compare_markdown_part(decisions)]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _manifest_facts(frames: RunFrames) -> dict[str, str]:
    m = frames.manifest
    git = m.get("git") if isinstance(m.get("git"), dict) else {}
    return {"run": frames.name, "folder": str(frames.root), "created": str(m.get("created_at", "–")),
            "commit": str(git.get("commit", "–"))}


def compare_html(result: pd.DataFrame, base: RunFrames, new: RunFrames, th: Thresholds,
                 decisions: dict | None = None) -> str:
    rows = display_rows(result)
    scored = [r for r in result.to_dict(orient="records") if not is_missing(r["delta_ci_high"])
              and not (isinstance(r["delta_ci_high"], float) and math.isnan(r["delta_ci_high"]))]
    chart = charts.forest([(f"{r['task']} / {r['strategy']}", r["delta"], r["delta_ci_low"], r["delta_ci_high"],
                            bool(r["regression"])) for r in scored], th.tolerance,
                          "score change per cell, 95% paired-bootstrap interval") if scored else None
    return render("compare.html.j2", "report.css", headers=HEADERS, rows=rows, chart=chart,
                  headline=headline(result), thresholds=thresholds_line(th), bad=int(result["regression"].sum()),
                  base=_manifest_facts(base), new=_manifest_facts(new), decisions=decisions)


def _terminal_row(r: dict[str, Any]) -> list[str]:
    """Narrow cells for an 80-column terminal; the full numbers are in compare.md."""
    delta = "–" if is_missing(r["delta"]) or math.isnan(r["delta"]) else (
        f"{r['delta']:+.3f} [{r['delta_ci_low']:+.2f},{r['delta_ci_high']:+.2f}]")
    ratio = [("–" if is_missing(v) or math.isnan(v) else f"x{v:.2f}") for v in (r["latency_ratio"], r["cost_ratio"])]
    return [str(r["task"]), str(r["strategy"]), _num(r["n_common"], "{:.0f}"), delta, *ratio, str(r["status"])]


def print_compare(result: pd.DataFrame, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, padding=(0, 1))
    show_model = result["model"].nunique() > 1
    for header in ("task", "strategy", "n", "Δ score [95% CI]", "p50", "$/query", "status"):
        text = header in ("task", "strategy", "status")
        table.add_column(header, overflow="fold", no_wrap=not text, justify="left" if text or "Δ" in header else "right")
    for r in result.to_dict(orient="records"):
        cells = _terminal_row(r)
        if show_model:
            cells[1] = f"{cells[1]} · {r['model']}"
        style = "red" if r["regression"] else None
        table.add_row(*[Text(c, style=style) for c in cells])  # Text: data is never console markup
    console.print(table)
    bad = bool(result["regression"].any())
    console.print(Text(headline(result), style="bold red" if bad else "bold green"))


def write_compare(out_dir: str | Path, result: pd.DataFrame, base: RunFrames, new: RunFrames,
                  th: Thresholds, decisions: dict | None = None) -> dict[str, Path]:
    store = RunStore(out_dir)
    doc = {"baseline": _manifest_facts(base), "new": _manifest_facts(new), "thresholds": th.__dict__,
           "regressions": int(result["regression"].sum()), "cells": summary_records(result)}
    if decisions:
        doc["decisions"] = {"constraints": decisions["constraints"], "tasks": decisions["tasks"],
                            "new": decisions["records"]}
    return {"md": store.write_text("compare.md", compare_markdown(result, base.name, new.name, th, decisions)),
            "html": store.write_text("compare.html", compare_html(result, base, new, th, decisions)),
            "json": store.write_text("compare.json", json.dumps(doc, indent=2, ensure_ascii=False, default=str))}


def run_compare(baseline: str, new: str, out: str | None, thresholds: Thresholds,
                console: Console | None = None, decide: dict | None = None) -> tuple[pd.DataFrame, dict[str, Path]]:
    """`bench compare`: resolve both sides (run folder or saved baseline name), compare,
    print the table and write compare.md/.html/.json to `out` (default: the new run's
    folder). Returns the comparison and the written files. `decide`: constraint flags
    over the runs' `decide:` block (reports/decide_out.py)."""
    from reports.decide_out import compare_decisions, print_compare_decisions
    from reports.baselines import resolve
    from reports.frame import load_run
    from reports.regression import compare_runs

    base_frames, new_frames = load_run(resolve(baseline)), load_run(resolve(new))
    result = compare_runs(base_frames, new_frames, thresholds)
    decisions = compare_decisions(base_frames, new_frames, decide)
    print_compare(result, console)
    if decisions:
        print_compare_decisions(decisions, console or Console())
    written = write_compare(Path(out) if out else new_frames.root, result, base_frames, new_frames, thresholds,
                            decisions)
    (console or Console()).print(Text(f"wrote {written['md']} and {written['html']}"))
    return result, written

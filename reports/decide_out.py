"""The decision under constraints (`reports.decide`) in every output: summary.md, the
terminal after the summary table, report.html's opening section and per-task table,
and `bench compare` (terminal, compare.md, compare.html, compare.json).

`bench compare` decides both runs under one set of constraints: the new run's `decide:`
block (else the baseline's), the command line's flags over it, so a change of
recommendation between the runs is a change in the runs, not in the constraints.
"""
from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console
from rich.text import Text

from reports.decide import MEASURES, Decision, RunDecisions, decide_run
from reports.frame import RunFrames
from reports.markdown import md_escape

TITLE = "Decision under your constraints"
STYLES = {"ship": "bold green", "uncertain": "bold yellow", "none": "bold red", "empty": "bold red"}


def headline(d: Decision) -> str:
    """"ship lora" / "uncertain (likeliest lora)" / "none meets them (min_score binds)"."""
    if d.outcome == "ship":
        return f"ship {d.pick}"
    if d.outcome == "uncertain":
        return f"uncertain (likeliest {d.pick})"
    return f"none meets them ({d.binding} binds)" if d.outcome == "none" else "no strategy finished"


def constraints_line(d: RunDecisions) -> str:
    return f"Constraints (from {d.config.source}): {d.constraints}."


def decisions_markdown(d: RunDecisions) -> str:
    lines = [f"### {TITLE}", "", md_escape(constraints_line(d)), ""]
    lines += [f"- **{md_escape(t.task)}**: {md_escape(t.text)}" for t in d.tasks]
    return "\n".join(lines)


def print_decisions(d: RunDecisions, console: Console) -> None:
    console.print(Text(f"\n{TITLE}", style="bold"))
    console.print(Text(constraints_line(d)))
    for t in d.tasks:  # Text: data is never console markup
        line = Text(f"{t.task}: ", style="bold")
        line.append(t.text, style=STYLES.get(t.outcome))
        console.print(line)


def task_table(decision: Decision | None) -> dict[str, Any] | None:
    """report.html's per-task table: each strategy's state on each constraint."""
    if decision is None or not decision.candidates:
        return None
    keys = list(decision.constraints.limits())
    heads = [MEASURES[k][0] for k in keys]
    show_cost = "max_monthly_usd" not in keys
    rows = []
    for c in decision.candidates:
        cells = [{"state": k.state, "text": k.short, "value": k.shown} for k in c.checks]
        rows.append({"label": c.label, "state": c.state, "cells": cells, "cost": c.cost_text,
                     "picked": c.label == decision.pick})
    return {"heads": heads, "rows": rows, "show_cost": show_cost, "outcome": decision.outcome}


def report_section(d: RunDecisions | None, anchors: Mapping[str, str]) -> dict[str, Any] | None:
    """report.html's opening section: the constraints and one line per task."""
    if d is None:
        return None
    return {"title": TITLE, "constraints": constraints_line(d),
            "items": [{"task": t.task, "anchor": anchors.get(t.task, ""), "outcome": t.outcome, "text": t.text}
                      for t in d.tasks]}


def compare_decisions(base: RunFrames, new: RunFrames, flags: Mapping[str, Any] | None = None) -> dict | None:
    """Both runs decided under the same constraints; None when none are set."""
    from reports.decide_config import from_manifest
    from reports.summary import summarize

    config = (from_manifest(new.manifest, flags, where=str(new.root / "manifest.json"))
              or from_manifest(base.manifest, flags, where=str(base.root / "manifest.json")))
    if config is None:
        return None
    now = decide_run(new, summarize(new), config=config)
    before = decide_run(base, summarize(base), config=config)
    if now is None:
        return None
    rows = []
    for t in now.tasks:
        old = before.get(t.task) if before is not None else None
        was = "not in the baseline" if old is None else (
            "same as the baseline" if headline(old) == headline(t) else f"the baseline: {headline(old)}")
        rows.append({"task": t.task, "outcome": t.outcome, "text": t.text, "headline": headline(t), "was": was,
                     "changed": old is not None and headline(old) != headline(t)})
    return {"constraints": constraints_line(now), "tasks": rows, "records": now.records()}


def compare_markdown_part(c: dict) -> str:
    lines = [f"### {TITLE} (both runs)", "", md_escape(c["constraints"]), ""]
    lines += [f"- **{md_escape(r['task'])}**: {md_escape(r['text'])} ({'**' if r['changed'] else ''}"
              f"{md_escape(r['was'])}{'**' if r['changed'] else ''})" for r in c["tasks"]]
    return "\n".join(lines)


def print_compare_decisions(c: dict, console: Console) -> None:
    console.print(Text(f"\n{TITLE} (both runs)", style="bold"))
    console.print(Text(c["constraints"]))
    for r in c["tasks"]:
        line = Text(f"{r['task']}: ", style="bold")
        line.append(r["headline"], style=STYLES.get(r["outcome"]))
        line.append(f" ({r['was']})", style="bold red" if r["changed"] else None)
        console.print(line)

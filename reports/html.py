"""report.html: one self-contained, script-free, printable page per run.

Safety: model outputs and user data are hostile text. Jinja autoescapes everything
(`autoescape=True`, not by extension); SVG is built with `Markup.format`, which escapes
too; and the page carries a Content-Security-Policy with `default-src 'none'`, so even
an escaping bug could run no script and fetch nothing. The one inline <style> is
allowed by its sha256 hash instead of 'unsafe-inline'.
"""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from bench.store import RunStore
from reports import svg
from reports.compare_pairs import compare_strategies
from reports.costs import break_even_frame, fmt_queries, fmt_usd, monthly_totals, price_table
from reports.frame import RunFrames, best_index, is_missing, load_run
from reports.markdown import fmt_ci, price_line
from reports.summary import NOT_OK, summarize
from reports.verdict import verdict

TEMPLATES = Path(__file__).parent / "templates"
DRILL_LIMIT = 50  # examples per task; more makes the file heavy and nobody reads them
TEXT_LIMIT = 300
RAG_KEYS = ("index_type", "n_chunks")


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt_num
    env.filters["usd"] = fmt_usd
    return env


def fmt_num(value: Any, spec: str = "{:.3f}") -> str:
    if is_missing(value):
        return "–"
    try:
        return spec.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def clip(value: Any, limit: int = TEXT_LIMIT) -> str:
    if is_missing(value):
        return ""
    text = " | ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _labels(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Display name per (strategy, model): the model is named only when a task has several."""
    many = rows["model"].nunique() > 1
    return {(r.strategy, r.model): f"{r.strategy} · {r.model}" if many else str(r.strategy)
            for r in rows.itertuples()}


def _drill(frames: RunFrames, task: str, labels: dict) -> dict[str, Any]:
    """Examples x strategies: input, target, and each strategy's output with a mark.
    With several seeds the lowest seed stands for the cell (outputs differ little)."""
    rows = frames.rows[frames.rows["task"] == task]
    if rows.empty:
        return {"columns": [], "examples": [], "total": 0}
    rows = rows.sort_values("seed", kind="stable").drop_duplicates(["strategy", "model", "example_id"])
    columns = [lab for key, lab in labels.items() if ((rows["strategy"] == key[0]) & (rows["model"] == key[1])).any()]
    ids = list(dict.fromkeys(rows["example_id"]))
    examples = []
    for ex_id in ids[:DRILL_LIMIT]:
        ex = rows[rows["example_id"] == ex_id]
        outs = {labels[(r.strategy, r.model)]: r for r in ex.itertuples()}
        cells = []
        for lab in columns:
            r = outs.get(lab)
            score = None if r is None or is_missing(r.score) else float(r.score)
            mark = "" if score is None else "✓" if score >= 1 else "✗" if score <= 0 else f"{score:.2f}"
            cls = "" if score is None else "right" if score >= 1 else "wrong" if score <= 0 else "partial"
            cells.append({"output": clip(None if r is None else r.output), "mark": mark, "cls": cls})
        first = ex.iloc[0]
        examples.append({"id": str(ex_id), "input": clip(first["input"]), "target": clip(first["target"]),
                         "cells": cells})
    return {"columns": columns, "examples": examples, "total": len(ids)}


def _loss_charts(cells: pd.DataFrame, labels: dict) -> list[Any]:
    charts = []
    for c in cells.itertuples():
        curve = c.info.get("loss_curve") if isinstance(c.info, dict) else None
        if not isinstance(curve, list) or not curve:
            continue
        series = []
        for key in ("train_loss", "val_loss"):
            pts = [(float(p["step"]), float(p[key])) for p in curve
                   if isinstance(p, dict) and not is_missing(p.get(key)) and not is_missing(p.get("step"))]
            if pts:
                series.append((key, pts))
        if series:
            name = f"{labels.get((c.strategy, c.model), c.strategy)} seed {fmt_num(c.seed, '{:.0f}')}"
            charts.append({"name": name, "svg": svg.line_chart(series, f"loss curve: {name}", "step", "loss")})
    return charts


def _facts(cells: pd.DataFrame, rows: pd.DataFrame, labels: dict) -> tuple[list, list]:
    """RAG cells' index facts, and every cell's other scalar `info` facts."""
    recall = {(r.strategy, r.model): r.recall_at_k for r in rows.itertuples()}
    rag, facts = [], []
    for c in cells.itertuples():
        info = c.info if isinstance(c.info, dict) else {}
        label = labels.get((c.strategy, c.model), str(c.strategy))
        if c.strategy == "rag" or any(k in info for k in RAG_KEYS):
            rag.append({"label": label, "seed": fmt_num(c.seed, "{:.0f}"), "index_type": info.get("index_type", "–"),
                        "n_chunks": info.get("n_chunks", "–"), "recall": fmt_num(recall.get((c.strategy, c.model)))})
        scalars = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) and k not in RAG_KEYS}
        if scalars:
            facts.append({"label": label, "seed": fmt_num(c.seed, "{:.0f}"),
                          "items": [(k, clip(v, 120)) for k, v in scalars.items()]})
    return rag, facts


def _run_date(frames: RunFrames) -> str:
    for key in ("started_at", "created_at", "date"):
        if isinstance(frames.manifest.get(key), str):
            return frames.manifest[key]
    starts = [s for s in frames.cells.get("started_at", []) if isinstance(s, str)]
    if starts:
        return min(starts)
    path = frames.root / "rows.jsonl"
    stamp = path.stat().st_mtime if path.exists() else datetime.now().timestamp()
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _volume(b: dict[str, Any]) -> str:
    if not is_missing(b["queries"]):
        return fmt_queries(b["queries"])
    return "never" if b["meaning"].startswith("never") else "–"


def _costs(rows: pd.DataFrame, labels: dict, comparisons: pd.DataFrame, breaks: pd.DataFrame,
           volumes: list[int]) -> dict[str, Any]:
    """A task's comparisons, break-even rows and monthly totals, formatted for the page."""
    task = rows["task"].iloc[0]
    pairs = comparisons[comparisons["task"] == task].to_dict(orient="records")
    even = [dict(b, volume=_volume(b)) for b in breaks[breaks["task"] == task].to_dict(orient="records")]
    ok = rows[~rows["status"].isin(NOT_OK)]
    totals = [{"label": labels[(t["strategy"], t["model"])], "totals": [fmt_usd(v) for v in t["totals"]]}
              for t in monthly_totals(ok, volumes)]
    return {"comparisons": pairs, "break_even": even, "totals": totals}


def report_context(frames: RunFrames, summary: pd.DataFrame,
                   comparisons: pd.DataFrame | None = None) -> dict[str, Any]:
    comparisons = compare_strategies(frames) if comparisons is None else comparisons
    breaks = break_even_frame(summary)
    prices = price_table(summary, frames.manifest)
    tasks = []
    for task, rows in summary.groupby("task", sort=False):
        labels = _labels(rows)
        best = best_index(rows[rows["status"] == "ok"], "score")
        table = [dict(r._asdict(), label=labels[(r.strategy, r.model)], best=r.Index == best,
                      ci=fmt_ci(r.score_ci_low, r.score_ci_high)) for r in rows.itertuples()]
        cells = frames.cells[frames.cells["task"] == task] if not frames.cells.empty else frames.cells
        metric = next((m for m in rows["metric"] if isinstance(m, str)), "score")
        bars = svg.bar_chart([(labels[(r.strategy, r.model)], r.score) for r in rows.itertuples()],
                             f"{metric} per strategy, {task}")
        points = svg.scatter([(labels[(r.strategy, r.model)], r.latency_p50_ms, r.score) for r in rows.itertuples()],
                             f"{metric} against latency, {task}", "latency p50 (ms)", metric)
        rag, facts = _facts(cells, rows, labels)
        tasks.append({"name": str(task), "metric": metric, "table": table,
                      "verdict": verdict(rows, labels, metric, comparisons, breaks),
                      "has_macro_f1": bool(rows["macro_f1"].notna().any()),
                      "bars": bars, "scatter": points, "losses": _loss_charts(cells, labels), "rag": rag,
                      "facts": facts, "drill": _drill(frames, task, labels),
                      "failed": [r for r in table if r["status"] in NOT_OK | {"partial"}],
                      **_costs(rows, labels, comparisons, breaks, prices["monthly_volumes"])})
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    return {"name": frames.name, "date": _run_date(frames), "tasks": tasks, "css": css, "csp": csp,
            "manifest": json.dumps(frames.manifest, indent=2, ensure_ascii=False, default=str),
            "drill_limit": DRILL_LIMIT, "volumes": [f"{v:,}" for v in prices["monthly_volumes"]],
            "prices": prices, "price_line": price_line(prices) if prices["hardware"] else None}


def render_html_text(frames: RunFrames, summary: pd.DataFrame | None = None,
                     comparisons: pd.DataFrame | None = None) -> str:
    summary = summarize(frames) if summary is None else summary
    ctx = report_context(frames, summary, comparisons)
    # The stylesheet is ours, not data; Markup keeps its bytes exactly as hashed.
    ctx["css"] = Markup(ctx["css"])
    return _env().get_template("report.html.j2").render(**ctx)


def render_html(run_dir: str | Path, frames: RunFrames | None = None, summary: pd.DataFrame | None = None,
                comparisons: pd.DataFrame | None = None) -> Path:
    frames = frames or load_run(run_dir)
    return RunStore(frames.root).write_text("report.html", render_html_text(frames, summary, comparisons))

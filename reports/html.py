"""report.html: one self-contained, printable page per run, read top to bottom.

First, with a `decide:` block, the strategy to ship per task under the team's
constraints (reports/decide.py); then a verdict per task (which strategy to choose and
why, ties called ties), then per task the side-by-side table, the decision charts
(accuracy against cost with dominated cells marked, latency distributions, total cost against query volume with break-even),
the paired comparisons and costs, LoRA loss curves, RAG retrieval, and a drill-down of
every example with filters; the manifest last. Escaping and the Content-Security-Policy
are `reports.page`'s; the only script is the drill-down's filter (`drill.js`).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench.store import RunStore
from reports import charts, svg, update_cost
from reports.compare_pairs import compare_strategies
from reports.costs import break_even_frame, fmt_queries, fmt_usd, monthly_totals, price_table
from reports.curves import learning_curve
from reports.decide import decide_run
from reports.decide_out import report_section, task_table
from reports.drill import DRILL_LIMIT, drill
from reports.frame import BASELINE, RunFrames, best_index, is_missing, load_run, ok_rows
from reports.latency_pairs import fmt_latency_pair, latency_comparisons
from reports.markdown import fmt_ci, price_line, served_backend
from reports.page import clip, fmt_num, render
from reports.summary import NOT_OK, summarize
from reports.verdict import display_labels, verdict

__all__ = ["DRILL_LIMIT", "render_html", "render_html_text", "report_context"]
RAG_KEYS = ("index_type", "index", "n_chunks", "k", "mode")


def _loss_charts(cells: pd.DataFrame, labels: dict) -> list[Any]:
    charts_ = []
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
            best = c.info.get("best_step")
            note = f"best validation loss at step {best}" if not is_missing(best) else ""
            if c.info.get("stopped_early"):
                note += " · stopped early"
            charts_.append({"name": name, "note": note,
                            "svg": svg.line_chart(series, f"loss curve: {name}", "step", "loss")})
    return charts_


def _facts(cells: pd.DataFrame, rows: pd.DataFrame, labels: dict) -> tuple[list, list, Any]:
    """RAG cells' retrieval facts with a recall@k chart, and every cell's other scalar facts."""
    recall = {(r.strategy, r.model): r.recall_at_k for r in rows.itertuples()}
    split = {(r.strategy, r.model): (r.score_retrieved, r.score_missed, r.rag_limit) for r in rows.itertuples()}
    rag, facts, bars = [], [], []
    for c in cells.itertuples():
        info = c.info if isinstance(c.info, dict) else {}
        label = labels.get((c.strategy, c.model), str(c.strategy))
        if any(k in info for k in ("index_type", "n_chunks")):  # the cell retrieved: its facts say so
            value = recall.get((c.strategy, c.model))
            rag.append({"label": label, "seed": fmt_num(c.seed, "{:.0f}"), "mode": info.get("mode", "–"),
                        "index_type": info.get("index_type", info.get("index", "–")),
                        "n_chunks": info.get("n_chunks", "–"), "k": info.get("k", "–"), "recall": fmt_num(value),
                        "hit": fmt_num(split.get((c.strategy, c.model), (None,) * 3)[0]),
                        "miss": fmt_num(split.get((c.strategy, c.model), (None,) * 3)[1]),
                        "limit": split.get((c.strategy, c.model), (None,) * 3)[2] or "–"})
            if not is_missing(value) and (label, value) not in bars:
                bars.append((label, float(value)))
        scalars = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) and k not in RAG_KEYS}
        if scalars:
            facts.append({"label": label, "seed": fmt_num(c.seed, "{:.0f}"),
                          "items": [(k, clip(v, 120)) for k, v in scalars.items()]})
    chart = svg.bar_chart(bars, "recall@k: share of questions whose gold document was retrieved") if bars else None
    return rag, facts, chart


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
    return "never" if str(b["meaning"]).startswith("never") else "–"


def _costs(rows: pd.DataFrame, labels: dict, comparisons: pd.DataFrame, breaks: pd.DataFrame,
           volumes: list[int]) -> dict[str, Any]:
    """A task's comparisons, break-even rows, monthly totals and cost chart."""
    task = rows["task"].iloc[0]
    pairs = comparisons[comparisons["task"] == task].to_dict(orient="records")
    even = [dict(b, volume=_volume(b)) for b in breaks[breaks["task"] == task].to_dict(orient="records")]
    ok = rows[~rows["status"].isin(NOT_OK | {BASELINE})]
    totals = [{"label": labels[(t["strategy"], t["model"])], "totals": [fmt_usd(v) for v in t["totals"]]}
              for t in monthly_totals(ok, volumes)]
    lines = [(labels[(r.strategy, r.model)], r.prepare_cost_usd,
              None if is_missing(r.cost_per_1k_usd) else r.cost_per_1k_usd / 1000.0) for r in rows.itertuples()
             if r.status != BASELINE]
    crossings = [(float(b["queries"]), f"{b['b']} < {b['a']} after {charts.volume(float(b['queries']))}")
                 for b in even if not is_missing(b["queries"]) and float(b["queries"]) > 0]
    chart = charts.cost_lines(lines, crossings, f"total cost against queries served, {task}")
    return {"comparisons": pairs, "break_even": even, "totals": totals, "cost_chart": chart}


def _decision_charts(frames: RunFrames, rows: pd.DataFrame, labels: dict, metric: str) -> dict[str, Any]:
    task = rows["task"].iloc[0]
    refs = [(labels[(r.strategy, r.model)], float(r.score)) for r in rows.itertuples()
            if r.status == BASELINE and not is_missing(r.score)]
    order = [r for r in rows.itertuples() if r.status != BASELINE]
    pareto = charts.pareto([(labels[(r.strategy, r.model)], r.cost_per_1k_usd, r.score, r.score_ci_low,
                             r.score_ci_high) for r in order], f"{metric} against cost per query, {task}", metric,
                           refs=refs)
    done = ok_rows(frames)
    done = done[done["task"] == task] if not done.empty else done
    series, batch1 = [], True
    for r in order:
        samples = _probe_samples(frames, task, r.strategy, r.model)
        if samples is None:  # no batch-1 probe: the per-query shares of the batched pass
            batch1 = False
            mine = done[(done["strategy"] == r.strategy) & (done["model"] == r.model)] if not done.empty else done
            samples = (mine["latency_s"].dropna() * 1000.0).tolist()
        series.append((labels[(r.strategy, r.model)], samples))
    how = "one query at a time" if batch1 else "share of the batched pass"
    latency = charts.latency_strips(series, f"latency per query ({how}), {task}")
    caption = ("each answered alone (batch 1), after warm-up" if batch1
               else "no batch-1 probe ran: batched queries share their batch's time")
    return {"pareto": pareto, "latency": latency, "latency_caption": caption}


def _probe_samples(frames: RunFrames, task: str, strategy: str, model: str) -> list[float] | None:
    """Batch-1 latencies (ms) of every finished seed's probe, or None when none ran."""
    cells = frames.cells
    if cells.empty or "latency" not in cells:
        return None
    mine = cells[(cells["task"] == task) & (cells["strategy"] == strategy) & (cells["model"] == model)
                 & ~cells["status"].astype(str).isin(NOT_OK)]
    out: list[float] = []
    for probe in mine["latency"]:
        default = probe.get("default") if isinstance(probe, dict) else None
        if isinstance(default, dict):
            out += [float(v) for v in default.get("samples_ms") or [] if isinstance(v, (int, float))]
    return out or None


def _table(rows: pd.DataFrame, labels: dict) -> list[dict[str, Any]]:
    """Summary rows for the page, each with its place on the cost/accuracy frontier."""
    best = best_index(rows[rows["status"] == "ok"], "score")
    order = list(rows.itertuples())
    dom = charts.dominated([(r.cost_per_1k_usd, r.score) for r in order])
    out = []
    for r, d in zip(order, dom):
        if is_missing(r.score) or is_missing(r.cost_per_1k_usd):
            place = "–"
        else:
            place = "frontier" if d is None else f"dominated by {labels[(order[d].strategy, order[d].model)]}"
        out.append(dict(r._asdict(), label=labels[(r.strategy, r.model)], best=r.Index == best,
                        ci=fmt_ci(r.score_ci_low, r.score_ci_high), pareto=place,
                        forgetting_ci=_forgetting(r)))
    return out


def _forgetting(r: Any) -> str:
    value = getattr(r, "forgetting", None)
    if is_missing(value):
        return "–"
    ci = fmt_ci(getattr(r, "forgetting_ci_low", None), getattr(r, "forgetting_ci_high", None))
    return f"{float(value):+.3f}" + ("" if ci == "–" else f" {ci}")


def report_context(frames: RunFrames, summary: pd.DataFrame, comparisons: pd.DataFrame | None = None,
                   decisions: Any = None, history: list | None = None) -> dict[str, Any]:
    """`history`: the results database's trend rows (`bench.history.trend`), passed in
    by the caller; without them each task's trend section is left out."""
    from reports.trend import trend_section

    comparisons = compare_strategies(frames) if comparisons is None else comparisons
    # reports.decide.RunDecisions (else the run's own `decide:` block); None: no constraints set
    decisions = decide_run(frames, summary) if decisions is None else decisions
    breaks = break_even_frame(summary, frames)
    prices = price_table(summary, frames.manifest)
    latency = latency_comparisons(frames)
    updates = update_cost.update_frame(frames, summary)
    tasks = []
    for i, (task, rows) in enumerate(summary.groupby("task", sort=False)):
        labels = display_labels(rows)
        table = _table(rows, labels)
        cells = frames.cells[frames.cells["task"] == task] if not frames.cells.empty else frames.cells
        metric = next((m for m in rows["metric"] if isinstance(m, str)), "score")
        rag, facts, recall_chart = _facts(cells, rows, labels)
        tasks.append({"name": str(task), "anchor": f"task-{i}", "metric": metric, "table": table,
                      "verdict": verdict(rows, labels, metric, comparisons, breaks, latency),
                      "latency_pairs": [fmt_latency_pair(c) for c in latency[latency["task"] == task]
                                        .to_dict(orient="records")],
                      "has_macro_f1": bool(rows["macro_f1"].notna().any()),
                      # weight-changing cells recorded training facts (reports/training_facts.py)
                      "has_training": bool("trainable_params" in rows and rows["trainable_params"].notna().any()),
                      # a served backend (vllm, openai): which one, and how labels were scored
                      "served": served_backend(rows),
                      **_decision_charts(frames, rows, labels, metric),
                      "losses": _loss_charts(cells, labels), "rag": rag, "recall_chart": recall_chart,
                      "facts": facts, "drill": drill(frames, task, labels, i), "curve": learning_curve(rows, metric),
                      "failed": [r for r in table if r["status"] in NOT_OK | {"partial"}],
                      **_costs(rows, labels, comparisons, breaks, prices["monthly_volumes"]),
                      "updates": update_cost.table_rows(updates, task),
                      "update_caption": update_cost.caption(updates, task),
                      "decision": task_table(decisions.get(str(task))) if decisions is not None else None})
        tasks[-1]["trend"] = trend_section(history or [], str(task), current_key=str(frames.root.resolve()))
    return {"name": frames.name, "date": _run_date(frames), "tasks": tasks,
            "decision": report_section(decisions, {t["name"]: t["anchor"] for t in tasks}),
            "manifest": json.dumps(frames.manifest, indent=2, ensure_ascii=False, default=str),
            "volumes": [f"{v:,}" for v in prices["monthly_volumes"]],
            "prices": prices, "price_line": price_line(prices) if prices["hardware"] else None}


def render_html_text(frames: RunFrames, summary: pd.DataFrame | None = None,
                     comparisons: pd.DataFrame | None = None, decisions: Any = None,
                     history: list | None = None) -> str:
    summary = summarize(frames, baselines=True) if summary is None else summary
    ctx = report_context(frames, summary, comparisons, decisions, history)
    return render("report.html.j2", "report.css", ("drill.js",), **ctx)


def render_html(run_dir: str | Path, frames: RunFrames | None = None, summary: pd.DataFrame | None = None,
                comparisons: pd.DataFrame | None = None, decisions: Any = None, history: list | None = None) -> Path:
    frames = frames or load_run(run_dir)
    return RunStore(frames.root).write_text("report.html",
                                            render_html_text(frames, summary, comparisons, decisions, history))

"""One row per (task, strategy, model): the numbers every report shows.

Per cell (one seed) the per-example rows are reduced first (mean score, macro-F1,
latency percentiles, token means); seeds are then averaged, so a noisy seed weighs as
much as any other. The score's interval comes from `reports.intervals`, throughput
and costs from `reports.costs`. Failed cells stay in the summary with their error and
an empty score: a missing row would read as "not run" rather than "broke".
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.store import RunStore
from reports.compare_pairs import compare_strategies, metric_by_task
from reports.costs import add_costs, break_even_frame, price_table
from reports.frame import KEYS, NOT_OK, RunFrames, load_run, ok_rows
from reports.intervals import macro_f1_by_cell, score_intervals

# Reduced from each cell's rows, then averaged over the seeds that finished.
ROW_STATS = ["score", "macro_f1", "exact_match", "f1", "recall_at_k", "latency_p50_ms", "latency_p95_ms",
             "prompt_tokens_mean", "completion_tokens_mean", "truncated_n"]
MEAN_COLUMNS = ROW_STATS + ["prepare_s", "predict_s", "peak_memory_mb"]
COLUMNS = KEYS + ["metric", "n_seeds", "n", "score", "score_ci_low", "score_ci_high", "score_std", "macro_f1",
                  "exact_match", "f1", "recall_at_k", "latency_p50_ms", "latency_p95_ms", "prompt_tokens_mean",
                  "completion_tokens_mean", "prepare_s", "predict_s", "queries_per_s", "hardware",
                  "price_usd_per_hour", "prepare_cost_usd", "cost_per_1k_usd", "peak_memory_mb", "truncated_n",
                  "device", "status", "error"]


def cell_stats(frames: RunFrames) -> pd.DataFrame:
    """One row per cell (task, strategy, model, seed), rows reduced, cell facts joined."""
    f1s = macro_f1_by_cell(frames.rows, metric_by_task(frames))
    stats = [_reduce_rows(cell, group) for cell, group in frames.rows.groupby("cell", sort=False)]
    by_rows = pd.DataFrame(stats, columns=["cell", *KEYS, "seed", "n_rows", *ROW_STATS])
    by_rows["macro_f1"] = [f1s.get(c, math.nan) for c in by_rows["cell"]]
    cells = frames.cells.drop(columns=[c for c in ("n",) if c in frames.cells]).copy()
    cells = cells[[c for c in ["cell", *KEYS, "seed", "metric", "prepare_s", "predict_s", "peak_memory_mb",
                               "device", "status", "error"] if c in cells]]
    # A left merge keeps the run's cell order (an outer merge would sort by cell id).
    merged = cells.merge(by_rows.drop(columns=KEYS + ["seed"]), on="cell", how="left")
    # Rows whose cell never got its record: the run died mid-cell.
    orphans = by_rows[~by_rows["cell"].isin(cells["cell"])].assign(
        status="incomplete", error="no cell record (the run stopped before this cell finished)")
    parts = [f for f in (merged, orphans) if not f.empty]
    return pd.concat(parts, ignore_index=True) if parts else merged


def _reduce_rows(cell: str, g: pd.DataFrame) -> dict[str, Any]:
    latency_ms = g["latency_s"].dropna().to_numpy() * 1000.0
    p50, p95 = np.percentile(latency_ms, [50, 95]) if latency_ms.size else (math.nan, math.nan)
    first = g.iloc[0]
    return {"cell": cell, "task": first["task"], "strategy": first["strategy"], "model": first["model"],
            "seed": first["seed"], "n_rows": len(g), "score": g["score"].mean(),
            "exact_match": g["exact_match"].mean(), "f1": g["f1"].mean(),
            "recall_at_k": g["recall_at_k"].mean(), "latency_p50_ms": float(p50),
            "latency_p95_ms": float(p95), "prompt_tokens_mean": g["prompt_tokens"].mean(),
            "completion_tokens_mean": g["completion_tokens"].mean(),
            "truncated_n": int(g["truncated"].astype(bool).sum())}


def summarize(frames: RunFrames) -> pd.DataFrame:
    per_cell = cell_stats(frames)
    if per_cell.empty:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.DataFrame([_combine_seeds(keys, g) for keys, g in per_cell.groupby(KEYS, sort=False, dropna=False)])
    out = out.merge(score_intervals(ok_rows(frames)), on=KEYS, how="left")
    return add_costs(out, frames.manifest)[COLUMNS]


def _combine_seeds(keys: tuple, g: pd.DataFrame) -> dict[str, Any]:
    status = g["status"].fillna("ok").astype(str)
    ok = g[~status.isin(NOT_OK)]
    row: dict[str, Any] = dict(zip(KEYS, keys))
    row["metric"] = next((m for m in g["metric"] if isinstance(m, str)), None)
    row["n_seeds"] = len(ok)
    row["n"] = int(ok["n_rows"].max()) if len(ok) and ok["n_rows"].notna().any() else 0
    for col in MEAN_COLUMNS:
        row[col] = float(ok[col].mean()) if len(ok) else math.nan
    row["score_std"] = float(ok["score"].std(ddof=1)) if len(ok) > 1 else math.nan
    # Pooled, not a mean of per-seed rates: total queries over total seconds is the rate.
    timed = ok[ok["predict_s"].notna() & ok["n_rows"].notna() & (ok["predict_s"] > 0)]
    row["queries_per_s"] = float(timed["n_rows"].sum() / timed["predict_s"].sum()) if len(timed) else math.nan
    row["device"] = next((d for d in g["device"] if isinstance(d, str)), None) if "device" in g else None
    if len(ok) == len(g):
        row["status"] = "ok"
    else:
        row["status"] = "partial" if len(ok) else status[~status.isin(["ok"])].iloc[0]
    errors = [str(e) for e in g.loc[status.isin(NOT_OK), "error"] if isinstance(e, str) and e]
    row["error"] = "; ".join(dict.fromkeys(errors)) or None
    return row


def summary_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able records: NaN and inf become null (strict JSON has neither), numpy
    scalars become Python numbers."""
    records = []
    for rec in frame.to_dict(orient="records"):
        clean = {}
        for key, value in rec.items():
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            clean[key] = value
        records.append(clean)
    return records


def write_summary(run_dir: str | Path, frames: RunFrames | None = None, summary: pd.DataFrame | None = None,
                  comparisons: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write summary.csv/.json/.md, comparisons.csv and break_even.csv into the run folder.

    summary.json holds the price table (version, source, date) beside the rows, since a
    cost is only meaningful with the price it was computed from.
    """
    from reports.markdown import summary_markdown  # markdown imports this module

    frames = frames or load_run(run_dir)
    summary = summarize(frames) if summary is None else summary
    comparisons = compare_strategies(frames) if comparisons is None else comparisons
    breaks = break_even_frame(summary)
    prices = price_table(summary, frames.manifest)
    doc = {"run": frames.name, "price_table": prices, "summary": summary_records(summary),
           "comparisons": summary_records(comparisons), "break_even": summary_records(breaks)}
    md = summary_markdown(summary, title=f"adaptbench run {frames.name}", comparisons=comparisons,
                          break_even=breaks, prices=prices)
    store = RunStore(frames.root)
    return {
        "csv": store.write_text("summary.csv", summary.to_csv(index=False)),
        "json": store.write_text("summary.json", json.dumps(doc, indent=2, ensure_ascii=False)),
        "md": store.write_text("summary.md", md),
        "comparisons": store.write_text("comparisons.csv", comparisons.to_csv(index=False)),
        "break_even": store.write_text("break_even.csv", breaks.to_csv(index=False)),
    }

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

from bench.names import csv_safe
from bench.store import RunStore
from reports.compare_pairs import compare_strategies, metric_by_task
from reports.costs import add_cost_intervals, add_costs, break_even_frame, price_table
from reports.frame import KEYS, NOT_OK, RunFrames, is_missing, load_run, ok_rows
from reports.intervals import macro_f1_by_cell, score_intervals
from reports.latency_pairs import implausible, latency_comparisons, latency_intervals
from reports.retrieval import retrieval_split
from reports.trivial import baseline_rows, with_baselines
from reports.training_facts import COLUMNS as TRAINING_COLUMNS, add_training_facts

# Reduced from each cell's rows (and its batch-1 latency probe), then averaged over
# the seeds that finished.
ROW_STATS = ["score", "macro_f1", "exact_match", "f1", "recall_at_k", "latency_p50_ms", "latency_p95_ms",
             "latency_p99_ms", "ttft_p50_ms", "ttft_p95_ms", "retrieval_ms_mean", "retrieval_share",
             "merged_latency_p50_ms", "batch_latency_p50_ms", "batch_latency_p95_ms", "prompt_tokens_mean",
             "prompt_tokens_p95", "completion_tokens_mean", "completion_tokens_p95", "truncated_n"]
CELL_STATS = ["prepare_s", "predict_s", "peak_memory_mb", "peak_memory_prepare_mb", "peak_memory_predict_mb",
              "peak_gpu_memory_mb", "energy_j"]
MEAN_COLUMNS = ROW_STATS + CELL_STATS
COLUMNS = KEYS + ["metric", "n_seeds", "n", "score", "score_ci_low", "score_ci_high", "score_std", "macro_f1",
                  "exact_match", "f1", "recall_at_k", "latency_mode", "latency_p50_ms", "latency_p95_ms",
                  "latency_p99_ms", "ttft_p50_ms", "ttft_p95_ms", "retrieval_ms_mean", "retrieval_share",
                  "merged_latency_p50_ms", "batch_latency_p50_ms", "batch_latency_p95_ms", "prompt_tokens_mean",
                  "prompt_tokens_p95", "completion_tokens_mean", "completion_tokens_p95", "prepare_s", "predict_s",
                  "queries_per_s", "gen_tokens_per_s", "hardware", "price_usd_per_hour", "prepare_cost_usd",
                  "cost_per_1k_usd", "api_model", "api_cost_per_1k_usd", "energy_j_per_query", "peak_memory_mb",
                  "peak_memory_prepare_mb", "peak_memory_predict_mb", "peak_gpu_memory_mb", "truncated_n",
                  "device", "backend", "scoring", "cost_basis", "status", "error"] + TRAINING_COLUMNS
# Intervals and flags sit right after the numbers they qualify.
for _after, _added in (("recall_at_k", ["score_retrieved", "score_missed", "rag_limit"]), ("latency_p95_ms", ["latency_p50_ci_low", "latency_p50_ci_high", "latency_p95_ci_low",
                                           "latency_p95_ci_high", "latency_probe_n", "latency_interleaved",
                                           "probe_load_max", "latency_flag"]),
                       ("cost_per_1k_usd", ["cost_per_1k_ci_low", "cost_per_1k_ci_high"])):
    COLUMNS[COLUMNS.index(_after) + 1:COLUMNS.index(_after) + 1] = _added


def cell_stats(frames: RunFrames) -> pd.DataFrame:
    """One row per cell (task, strategy, model, seed), rows reduced, cell facts joined."""
    f1s = macro_f1_by_cell(frames.rows, metric_by_task(frames))
    stats = [_reduce_rows(cell, group) for cell, group in frames.rows.groupby("cell", sort=False)]
    by_rows = pd.DataFrame(stats, columns=["cell", *KEYS, "seed", "n_rows", *ROW_STATS, "completion_tokens_sum"])
    by_rows["macro_f1"] = [f1s.get(c, math.nan) for c in by_rows["cell"]]
    cells = frames.cells.drop(columns=[c for c in ("n",) if c in frames.cells]).copy()
    probes = cells["latency"] if "latency" in cells else pd.Series([None] * len(cells), index=cells.index)
    cells = cells[[c for c in ["cell", *KEYS, "seed", "metric", *CELL_STATS, "device", "backend", "scoring",
                               "status", "error"] if c in cells]]
    # A left merge keeps the run's cell order (an outer merge would sort by cell id).
    merged = cells.merge(by_rows.drop(columns=KEYS + ["seed"]), on="cell", how="left")
    for col in CELL_STATS:
        if col not in merged:
            merged[col] = math.nan
        merged[col] = pd.to_numeric(merged[col], errors="coerce")
    merged["latency_mode"] = "batched"
    for i, probe in zip(merged.index, probes.reindex(range(len(merged))).tolist()):
        _apply_probe(merged, i, probe)
    # Rows whose cell never got its record: the run died mid-cell.
    orphans = by_rows[~by_rows["cell"].isin(cells["cell"])].assign(
        status="incomplete", error="no cell record (the run stopped before this cell finished)")
    parts = [f for f in (merged, orphans) if not f.empty]
    return pd.concat(parts, ignore_index=True) if parts else merged


def _pct(values: pd.Series, qs: list[float]) -> list[float]:
    arr = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    return [float(v) for v in np.percentile(arr, qs)] if arr.size else [math.nan] * len(qs)


def _reduce_rows(cell: str, g: pd.DataFrame) -> dict[str, Any]:
    # Per-query shares of the batched pass: the fallback latency when no probe ran.
    # Rows served from a cache are no evidence of speed and never count here.
    live = g[~g["cached"].fillna(False).astype(bool)] if "cached" in g else g
    p50, p95, p99 = _pct(live["latency_s"] * 1000.0, [50, 95, 99])
    retrieval = pd.to_numeric(g.get("retrieval_s"), errors="coerce") if "retrieval_s" in g else None
    first = g.iloc[0]
    return {"cell": cell, "task": first["task"], "strategy": first["strategy"], "model": first["model"],
            "seed": first["seed"], "n_rows": len(g), "score": g["score"].mean(),
            "exact_match": g["exact_match"].mean(), "f1": g["f1"].mean(),
            "recall_at_k": g["recall_at_k"].mean(), "latency_p50_ms": p50, "latency_p95_ms": p95,
            "latency_p99_ms": p99, "batch_latency_p50_ms": p50, "batch_latency_p95_ms": p95,
            "retrieval_ms_mean": float(retrieval.mean() * 1000.0) if retrieval is not None and retrieval.gt(0).any()
            else math.nan,
            "prompt_tokens_mean": g["prompt_tokens"].mean(), "prompt_tokens_p95": _pct(g["prompt_tokens"], [95])[0],
            "completion_tokens_mean": g["completion_tokens"].mean(),
            "completion_tokens_p95": _pct(g["completion_tokens"], [95])[0],
            "completion_tokens_sum": float(pd.to_numeric(g["completion_tokens"], errors="coerce").sum()),
            "truncated_n": int(g["truncated"].astype(bool).sum())}


PROBE_COLUMNS = {"latency_p50_ms": "latency_p50_ms", "latency_p95_ms": "latency_p95_ms",
                 "latency_p99_ms": "latency_p99_ms", "ttft_p50_ms": "ttft_p50_ms", "ttft_p95_ms": "ttft_p95_ms",
                 "retrieval_ms_mean": "retrieval_mean_ms", "retrieval_share": "retrieval_share"}


def _apply_probe(frame: pd.DataFrame, i: Any, probe: Any) -> None:
    """Batch-1 numbers from the cell's latency probe replace the batched shares: the
    latency a user waiting on one answer sees, measured warm and never from a cache."""
    default = probe.get("default") if isinstance(probe, dict) else None
    if not isinstance(default, dict) or not default.get("n"):
        for col in ("ttft_p50_ms", "ttft_p95_ms", "retrieval_share", "merged_latency_p50_ms"):
            frame.loc[i, col] = math.nan
        return
    frame.loc[i, "latency_mode"] = "batch-1"
    for col, key in PROBE_COLUMNS.items():
        value = default.get(key)
        frame.loc[i, col] = float(value) if isinstance(value, (int, float)) else math.nan
    merged = probe.get("merged") if isinstance(probe.get("merged"), dict) else {}
    value = merged.get("latency_p50_ms")
    frame.loc[i, "merged_latency_p50_ms"] = float(value) if isinstance(value, (int, float)) else math.nan


def summarize(frames: RunFrames, baselines: bool = False) -> pd.DataFrame:
    """One row per (task, strategy, model); with `baselines`, each task's trivial
    baselines (`reports.trivial`, status "baseline") follow its strategies, as every
    rendered table shows them."""
    per_cell = cell_stats(frames)
    if per_cell.empty:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.DataFrame([_combine_seeds(keys, g) for keys, g in per_cell.groupby(KEYS, sort=False, dropna=False)])
    out = out.merge(score_intervals(ok_rows(frames)), on=KEYS, how="left")
    out = out.merge(latency_intervals(frames), on=KEYS, how="left")
    out = out.merge(retrieval_split(ok_rows(frames)), on=KEYS, how="left")
    out = _backend_costs(add_costs(out, frames.manifest), frames.manifest)
    flags = implausible(frames, out, latency_comparisons(frames))
    out["latency_flag"] = [flags.get(tuple(k)) for k in out[KEYS].itertuples(index=False)]
    out = add_training_facts(add_cost_intervals(out, frames), frames)[COLUMNS]  # forgetting, sizes, sweeps
    return with_baselines(out, baseline_rows(frames, metric_by_task(frames))) if baselines else out


def _backend_costs(out: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    """Cost follows the backend: a hosted API is priced by its measured tokens per query
    and its API price entry; a server elsewhere only with a pinned `cost.hardware`."""
    from bench.cost import cost_per_1k_queries, hosted_cost_per_1k, prepare_cost, serving_basis
    from reports.costs import hardware_key, hourly_price

    models = manifest.get("models") if isinstance(manifest.get("models"), dict) else {}
    pinned = isinstance(manifest.get("cost"), dict) and manifest["cost"].get("hardware")
    bases = []
    for i, row in out.iterrows():
        entry = models.get(row["model"]) if isinstance(models.get(row["model"]), dict) else {}
        backend = row.get("backend") if isinstance(row.get("backend"), str) else entry.get("backend") or "hf"
        out.at[i, "backend"] = backend
        basis = serving_basis(entry)
        if basis == "hardware" and backend != "hf":  # a server on this machine: its CPU, or its GPU
            gpu = (manifest.get("hardware") or {}).get("gpu") if isinstance(manifest.get("hardware"), dict) else None
            key = hardware_key(manifest, "cuda" if gpu else "cpu")
            price = hourly_price(manifest, key)
            qps = row["queries_per_s"]
            out.at[i, "hardware"], out.at[i, "price_usd_per_hour"] = key, price
            out.at[i, "cost_per_1k_usd"] = math.nan if is_missing(qps) else cost_per_1k_queries(qps, price)
            # Training an adapter or building an index ran on this machine too.
            prep = row["prepare_s"]
            out.at[i, "prepare_cost_usd"] = math.nan if is_missing(prep) or is_missing(price) else \
                prepare_cost(prep, price)
            row = out.loc[i]
        if basis == "api":
            spec = entry.get("spec") if isinstance(entry.get("spec"), dict) else {}
            cost, text = hosted_cost_per_1k(row["prompt_tokens_mean"], row["completion_tokens_mean"], spec.get("price"))
            out.at[i, "cost_per_1k_usd"], out.at[i, "hardware"] = cost, None
            out.at[i, "price_usd_per_hour"] = math.nan
            if spec.get("price"):
                out.at[i, "api_model"], out.at[i, "api_cost_per_1k_usd"] = spec["price"], cost
        elif basis == "remote" and not pinned:
            out.at[i, "cost_per_1k_usd"], out.at[i, "hardware"] = math.nan, None
            text = "self-hosted server elsewhere: pin cost.hardware (or usd_per_hour) to price it"
        else:
            text = (f"{row['hardware']} ${row['price_usd_per_hour']:.4g}/h over the measured throughput"
                    if isinstance(row.get("hardware"), str) else "hardware not in the price table")
        bases.append(text)
    out["cost_basis"] = bases
    return out


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
    row["gen_tokens_per_s"] = (float(timed["completion_tokens_sum"].sum() / timed["predict_s"].sum())
                               if len(timed) and timed["completion_tokens_sum"].sum() > 0 else math.nan)
    energy = ok[ok["energy_j"].notna() & (ok["n_rows"] > 0)]
    row["energy_j_per_query"] = (float(energy["energy_j"].sum() / energy["n_rows"].sum())
                                 if len(energy) else math.nan)
    modes = [m for m in ok["latency_mode"] if isinstance(m, str)] if "latency_mode" in ok else []
    row["latency_mode"] = "/".join(dict.fromkeys(modes)) or None
    row["device"] = next((d for d in g["device"] if isinstance(d, str)), None) if "device" in g else None
    for col in ("backend", "scoring"):  # older runs have neither: hf, and unrecorded
        row[col] = "/".join(dict.fromkeys(v for v in g[col] if isinstance(v, str))) or None if col in g else None

    if len(ok) == len(g):
        row["status"] = "ok"
    elif status.eq("incomplete").any():  # damage in any seed is shown, never averaged away
        row["status"] = "incomplete"
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
                  comparisons: pd.DataFrame | None = None, decisions: Any = None) -> dict[str, Path]:
    """Write summary.csv/.json/.md, comparisons.csv and break_even.csv into the run folder.

    summary.json holds the price table (version, source, date) beside the rows, since a
    cost is only meaningful with the price it was computed from.
    """
    from reports.markdown import summary_markdown  # markdown imports this module

    frames = frames or load_run(run_dir)
    summary = summarize(frames, baselines=True) if summary is None else summary
    comparisons = compare_strategies(frames) if comparisons is None else comparisons
    breaks = break_even_frame(summary, frames)
    prices = price_table(summary, frames.manifest)
    doc = {"run": frames.name, "price_table": prices, "summary": summary_records(summary),
           "comparisons": summary_records(comparisons), "break_even": summary_records(breaks)}
    latency = latency_comparisons(frames)
    doc["latency_comparisons"] = summary_records(latency)
    from reports.update_cost import records, update_frame

    updates = update_frame(frames, summary)
    if not updates.empty:
        doc["update_cost"] = records(updates)
    if decisions is None:  # `decisions`: reports.decide.RunDecisions, else the run's own `decide:` block
        from reports.decide import decide_run

        decisions = decide_run(frames, summary)
    if decisions is not None:
        doc["decisions"] = decisions.records()
    md = summary_markdown(summary, title=f"adaptbench run {frames.name}", comparisons=comparisons,
                          break_even=breaks, prices=prices, latency=latency, decisions=decisions,
                          updates=updates)
    store = RunStore(frames.root)
    return {
        # Text cells a spreadsheet would run as formulas (=, +, -, @) are quoted.
        "csv": store.write_text("summary.csv", csv_safe(summary).to_csv(index=False)),
        "json": store.write_text("summary.json", json.dumps(doc, indent=2, ensure_ascii=False)),
        "md": store.write_text("summary.md", md),
        "comparisons": store.write_text("comparisons.csv", csv_safe(comparisons).to_csv(index=False)),
        "break_even": store.write_text("break_even.csv", csv_safe(breaks).to_csv(index=False)),
        "latency": store.write_text("latency_comparisons.csv", csv_safe(latency).to_csv(index=False)),
    }

"""Throughput, cost and break-even columns from the summary and the run's manifest.

The hardware is priced from the manifest (`hardware.gpu`, `hardware.cpu_count`) with
`bench.cost`'s default list prices; a run may pin them with an optional manifest
section `cost: {hardware: <price-table key>, usd_per_hour: <float>, monthly_volumes:
[...]}`. Throughput is measured, not assumed: total test queries over total predict
seconds of the finished seeds (at the configured batch size), and a rented machine is
paid whether busy or not, so cost per query is price / throughput. Preparation (an index
build, a LoRA run) is the fixed cost that break-even weighs against per-query cost.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from bench.cost import (API_PRICES, HARDWARE_PRICES, PRICE_TABLE_VERSION, api_cost_per_1k, break_even,
                        break_even_interval, cost_per_1k_queries, detect_hardware_key, prepare_cost,
                        price_per_hour, total_cost)
from bench.errors import BenchError
from reports.frame import BASELINE, NOT_OK, is_missing

COST_COLUMNS = ["hardware", "price_usd_per_hour", "prepare_cost_usd", "cost_per_1k_usd"]
DEFAULT_VOLUMES = (10_000, 100_000, 1_000_000)
DEFAULT_API_MODEL = "gpt-4o-mini"
BREAK_EVEN_COLUMNS = ["task", "model", "a", "b", "prepare_cost_a_usd", "prepare_cost_b_usd", "cost_per_1k_a_usd",
                      "cost_per_1k_b_usd", "queries", "queries_ci_low", "queries_ci_high", "meaning"]
N_COST_RESAMPLES = 2000
# Fewer independent timings than this and a cost interval would be noise about noise.
MIN_TIMINGS = 5


def _settings(manifest: dict[str, Any]) -> dict[str, Any]:
    cost = manifest.get("cost")
    return cost if isinstance(cost, dict) else {}


def hardware_key(manifest: dict[str, Any], device: Any, cell_hardware: Any = None) -> str | None:
    """Price-table key for a cell that ran on `device` ("cpu", "cuda", ...).

    The hardware is the cell's own (`cell_hardware`, from the manifest's `cells` entry:
    the node it ran on, which on a cluster is not the driver's), else the manifest's.
    A CPU cell is priced as a CPU instance of the machine's size even on a GPU host; an
    accelerator the table does not know gives None (unknown cost, not a CPU price).
    """
    pinned = _settings(manifest).get("hardware")
    if isinstance(pinned, str) and pinned:
        return pinned
    hw = manifest.get("hardware") if isinstance(manifest.get("hardware"), dict) else {}
    if isinstance(cell_hardware, dict) and cell_hardware:
        hw = cell_hardware
    gpu, cpus = hw.get("gpu"), hw.get("cpu_count")
    dev = device.lower() if isinstance(device, str) else ""
    if dev.startswith("cpu") or (not dev and not gpu):
        return detect_hardware_key(None, cpus if isinstance(cpus, int) else None)
    return detect_hardware_key(gpu) if isinstance(gpu, str) and gpu else None


def _cell_hardware(manifest: dict[str, Any], row: Any) -> dict[str, Any] | None:
    """The hardware recorded for the first seed's cell of a summary row."""
    cells = manifest.get("cells") if isinstance(manifest.get("cells"), dict) else {}
    prefix = f"{row.get('task')}|{row.get('strategy')}|{row.get('model')}|"
    for cell, entry in cells.items():
        if str(cell).startswith(prefix) and isinstance(entry, dict) and isinstance(entry.get("hardware"), dict):
            return entry["hardware"]
    return None


def hourly_price(manifest: dict[str, Any], key: str | None) -> float:
    pinned = _settings(manifest).get("usd_per_hour")
    if isinstance(pinned, (int, float)) and not isinstance(pinned, bool):
        return float(pinned)
    try:
        return price_per_hour(key)
    except KeyError as exc:  # a pinned key with a typo
        raise BenchError(f"manifest cost.hardware: {exc.args[0]}") from exc


def monthly_volumes(manifest: dict[str, Any]) -> list[int]:
    given = _settings(manifest).get("monthly_volumes")
    if isinstance(given, list) and given and all(isinstance(v, (int, float)) and v >= 0 for v in given):
        return [int(v) for v in given]
    return list(DEFAULT_VOLUMES)


def add_costs(summary: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    """The summary with `COST_COLUMNS` filled from `queries_per_s`, `prepare_s` and `device`."""
    out = summary.copy()
    keys = [hardware_key(manifest, d, _cell_hardware(manifest, row)) for d, (_, row) in
            zip(out["device"], out.iterrows())] if len(out) else []
    prices = [hourly_price(manifest, k) for k in keys]
    out["hardware"] = keys
    out["price_usd_per_hour"] = prices
    out["prepare_cost_usd"] = [math.nan if is_missing(s) or is_missing(p) else prepare_cost(s, p)
                               for s, p in zip(out["prepare_s"], prices)]
    out["cost_per_1k_usd"] = [math.nan if is_missing(q) else cost_per_1k_queries(q, p)
                              for q, p in zip(out["queries_per_s"], prices)]
    # What the same prompts and answers would cost on a hosted API, per 1k queries.
    api = api_model(manifest)
    out["api_model"] = api
    out["api_cost_per_1k_usd"] = [math.nan if is_missing(p) or is_missing(c) else api_cost_per_1k(p, c, api)
                                  for p, c in zip(out["prompt_tokens_mean"], out["completion_tokens_mean"])]
    return out


def api_model(manifest: dict[str, Any]) -> str:
    given = _settings(manifest).get("api_model")
    return given if isinstance(given, str) and given in API_PRICES else DEFAULT_API_MODEL


def price_table(summary: pd.DataFrame, manifest: dict[str, Any]) -> dict[str, Any]:
    """The prices used, with source and date, for the JSON and the HTML."""
    pinned = _settings(manifest).get("usd_per_hour") is not None
    used = {}
    for key in dict.fromkeys(k for k in summary.get("hardware", []) if isinstance(k, str)):
        entry = HARDWARE_PRICES.get(key)
        default = entry is not None and not pinned
        used[key] = {"usd_per_hour": hourly_price(manifest, key),
                     "description": entry.description if entry else key,
                     "source": entry.source if default else "pinned in the run's manifest (cost.usd_per_hour)",
                     "as_of": entry.as_of if default else None, "default_list_price": default}
    api = api_model(manifest)
    entry = API_PRICES[api]
    api_price = {"model": api, "usd_per_m_prompt_tokens": entry.input_per_m,
                 "usd_per_m_completion_tokens": entry.output_per_m, "source": entry.source, "as_of": entry.as_of}
    return {"version": PRICE_TABLE_VERSION, "hardware": used, "api": api_price,
            "monthly_volumes": monthly_volumes(manifest),
            "note": ("Pinned in the run's manifest." if pinned else "Default on-demand list prices from "
                     "bench.cost, not quotes: override them for your own rates.")
                    + " Cost per query assumes the machine is paid for all the time it serves."}


def fmt_usd(value: Any, floor: float = 1e-6) -> str:
    """Dollars readable at any scale: $1,234 / $12.34 / $0.00992 / $0.0000496; below
    `floor` (the terminal passes 0.001 to stay narrow) as "<$floor"."""
    if is_missing(value):
        return "–"
    v = float(value)
    if math.isinf(v):
        return "∞"
    if v == 0:
        return "$0"
    if v < floor:
        return f"<${floor:f}".rstrip("0")
    if v >= 1:
        return f"${v:,.0f}" if v >= 100 else f"${v:.2f}"
    # Three significant digits in fixed notation: "$4.96e-05" reads badly in a cost column.
    return f"${v:.{2 - math.floor(math.log10(v))}f}"


def fmt_queries(q: float) -> str:
    # Break-even is "after N queries": round up, but not 4000.0000001 to 4001.
    return f"{math.ceil(round(q, 6)):,}"


def _meaning(a: str, b: str, fa: float, fb: float, qa: float, qb: float, q: float | None) -> str:
    if q is not None and math.isnan(q):
        return "unknown: a prepare time, throughput or hardware price is missing"
    if fa == fb:
        if qa == qb:
            return "same cost at every volume"
        return f"same fixed cost; {a if qa < qb else b} is cheaper at every volume"
    if q is None:
        return f"never: {a} is cheaper at every volume ({b} costs more up front and no less per query)"
    return f"{b} (higher fixed cost) becomes cheaper than {a} after {fmt_queries(q)} queries"


def _timings(frames, rows: pd.DataFrame, key: tuple[str, str, str], probes_: dict) -> np.ndarray | None:
    """Independent timings (ms or s: only their relative spread is used) of one summary
    row: its batch-1 probe samples (ordered by seed and query, so two rows probed on the
    same queries resample them jointly), else the distinct per-batch times of its
    batched pass (every query of a batch shares one value, so rows are not independent);
    None when fewer than `MIN_TIMINGS` exist: the noise is unknown."""
    p = probes_.get(key)
    if p and len(p["samples"]) >= MIN_TIMINGS:
        return np.asarray([p["samples"][k] for k in sorted(p["samples"], key=str)], dtype=float)
    task, strategy, model = key
    mine = rows[(rows["task"] == task) & (rows["strategy"] == strategy) & (rows["model"] == model)]
    batches: list[float] = []
    for _, cell in mine.groupby("cell", sort=False):
        lat = pd.to_numeric(cell["latency_s"], errors="coerce").dropna().to_numpy(dtype=float)
        batches += [float(v) for i, v in enumerate(lat) if i == 0 or v != lat[i - 1]]
    return np.asarray(batches) if len(batches) >= MIN_TIMINGS else None


def cost_samples(frames, summary: pd.DataFrame, n_resamples: int = N_COST_RESAMPLES,
                 seed: int = 0) -> dict[tuple[str, str, str], np.ndarray]:
    """Bootstrap samples of USD per query for each summary row whose timing noise is
    known (see `_timings`). The point is price / measured throughput; the samples carry
    the relative uncertainty of the mean time per query (bootstrap of the timings'
    mean over their mean), since a throughput is a mean time per query. Rows without
    enough independent timings get none: their intervals are "uncertain"."""
    from bench.stats import bootstrap_means
    from reports.frame import ok_rows
    from reports.latency_pairs import probes

    rows, found = ok_rows(frames), probes(frames)
    out: dict[tuple[str, str, str], np.ndarray] = {}
    for r in summary.to_dict(orient="records"):
        point = r.get("cost_per_1k_usd")
        if r.get("status") == BASELINE or is_missing(point) or math.isinf(float(point)):
            continue
        key = (r["task"], r["strategy"], r["model"])
        timings = _timings(frames, rows, key, found)
        if timings is None or timings.mean() <= 0:
            continue
        means = bootstrap_means(timings, n_resamples, seed)
        out[key] = means / timings.mean() * float(point) / 1000.0
    return out


def add_cost_intervals(summary: pd.DataFrame, frames) -> pd.DataFrame:
    """`cost_per_1k_ci_low/high`: the 95% interval of cost per 1,000 queries (nan: uncertain)."""
    out = summary.copy()
    samples = cost_samples(frames, out) if len(out) else {}
    lows, highs = [], []
    for r in out.to_dict(orient="records"):
        s = samples.get((r["task"], r["strategy"], r["model"]))
        low, high = (np.quantile(s, [0.025, 0.975]) * 1000.0) if s is not None else (math.nan, math.nan)
        lows.append(float(low))
        highs.append(float(high))
    out["cost_per_1k_ci_low"], out["cost_per_1k_ci_high"] = lows, highs
    return out


def break_even_frame(summary: pd.DataFrame, frames=None) -> pd.DataFrame:
    """Each pair of finished strategies per (task, model); b is the one with the higher
    prepare cost, `queries` the volume after which it is cheaper overall (None: never).
    With the run's `frames`, a 95% interval from bootstrapped per-query costs (the
    prepare costs are single measurements and are held fixed); inf high: maybe never."""
    out: list[dict[str, Any]] = []
    ok = summary[~summary["status"].astype(str).isin(NOT_OK | {BASELINE})] if len(summary) else summary
    samples = cost_samples(frames, ok) if frames is not None and len(ok) else {}
    for (task, model), rows in ok.groupby(["task", "model"], sort=False):
        for x, y in itertools.combinations(rows.to_dict(orient="records"), 2):
            fx, fy = float(x["prepare_cost_usd"]), float(y["prepare_cost_usd"])
            if fy < fx:
                x, y, fx, fy = y, x, fy, fx
            qx, qy = float(x["cost_per_1k_usd"]) / 1000.0, float(y["cost_per_1k_usd"]) / 1000.0
            q = break_even(fx, qx, fy, qy)
            sx, sy = samples.get((task, x["strategy"], model)), samples.get((task, y["strategy"], model))
            low = high = None
            if sx is not None and sy is not None and not (math.isnan(fx) or math.isnan(fy)):
                _, low, high = break_even_interval(fx, sx, fy, sy)
            meaning = _meaning(x["strategy"], y["strategy"], fx, fy, qx, qy, q)
            if q is not None and not math.isnan(q) and q > 0:
                meaning += f" ({_interval_text(low, high)})"
            out.append({"task": task, "model": model, "a": x["strategy"], "b": y["strategy"],
                        "prepare_cost_a_usd": fx, "prepare_cost_b_usd": fy, "cost_per_1k_a_usd": qx * 1000,
                        "cost_per_1k_b_usd": qy * 1000, "queries": None if q is None or math.isnan(q) else q,
                        "queries_ci_low": low, "queries_ci_high": high, "meaning": meaning})
    return pd.DataFrame(out, columns=BREAK_EVEN_COLUMNS)


def _interval_text(low: float | None, high: float | None) -> str:
    if low is None or math.isnan(low):
        return "95% CI uncertain: too few independent timings to know the per-query cost's noise"
    if math.isinf(high):
        return f"95% CI {fmt_queries(low)} to never"
    if fmt_queries(low) == fmt_queries(high):
        return f"95% CI {fmt_queries(low)}, timing noise negligible"
    return f"95% CI {fmt_queries(low)} to {fmt_queries(high)}"


def monthly_totals(rows: pd.DataFrame, volumes: Sequence[int]) -> list[dict[str, Any]]:
    """Per strategy row: prepare cost once plus serving cost at each monthly volume."""
    out = []
    for r in rows.to_dict(orient="records"):
        fixed, per_1k = r.get("prepare_cost_usd"), r.get("cost_per_1k_usd")
        if is_missing(fixed) or is_missing(per_1k):
            totals = [math.nan] * len(volumes)
        else:
            totals = total_cost(fixed, per_1k / 1000.0, volumes)
        out.append({"strategy": r["strategy"], "model": r["model"], "totals": totals})
    return out

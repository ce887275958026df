"""The update-cost table: what keeping each strategy current costs, next to serving.

Reads each cell's `update` fact (bench/updates.py, in cells.jsonl) and the summary's
prices: an update's dollars are its seconds on the cell's machine at the same hourly
price as its queries (`bench.cost.prepare_cost`). A steady month is the queries served
plus `refresh_per_month` updates (the first build is the break-even table's business):

    monthly total(V) = V / 1000 x $ per 1k queries + refresh_per_month x $ per update

Seeds are averaged. A retraining figure is an estimate (the cell's own prepare seconds)
and says so; an incremental re-index is measured and, when the run asked for one
(`compare_rebuild`), carries its full-rebuild time and its check against a full
rebuild's retrieval; without, the table says the rebuild was not timed.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.cost import prepare_cost
from reports.costs import fmt_usd, monthly_volumes
from reports.frame import BASELINE, NOT_OK, RunFrames, is_missing

DEFAULT_REFRESH = 4.0
UPDATE_COLUMNS = ["task", "strategy", "model", "method", "estimate", "seconds", "usd_per_update", "refresh_per_month",
                  "updates_usd_per_month", "cost_per_1k_usd", "monthly_volumes", "monthly_totals_usd",
                  "full_rebuild_s", "speedup", "check", "source", "detail", "error"]


def refresh_per_month(manifest: dict[str, Any]) -> float:
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    value = config.get("refresh_per_month")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    return float(value) if ok else DEFAULT_REFRESH


def _mean(facts: list[dict], key: str) -> float:
    values = [float(f[key]) for f in facts if isinstance(f.get(key), (int, float)) and not isinstance(f.get(key), bool)]
    return sum(values) / len(values) if values else math.nan


def _detail(facts: list[dict]) -> str:
    f = facts[0]
    if f.get("method") == "incremental re-index":
        rebuild = _mean(facts, "full_rebuild_s")
        text = (f"{f.get('chunks_removed', 0)} chunks out, {f.get('chunks_added', 0)} in ({f.get('index')} index); "
                + (f"full rebuild {rebuild:.2f} s" if not math.isnan(rebuild) else
                   "full rebuild not timed (`compare_rebuild: true` times one and checks the retrieval against it)"))
        if f.get("tombstones"):
            text += f"; {f['tombstones']} tombstones (HNSW cannot delete: rebuild once they pile up)"
        return text
    return str(f.get("basis") or "")


def update_frame(frames: RunFrames, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, strategy, model) whose cells measured an update."""
    cells = frames.cells
    if cells.empty or "update" not in cells:
        return pd.DataFrame(columns=UPDATE_COLUMNS)
    ok = cells[~cells["status"].astype(str).isin(NOT_OK)]
    refresh, volumes = refresh_per_month(frames.manifest), monthly_volumes(frames.manifest)
    prices = {(r["task"], r["strategy"], r["model"]): r for r in summary.to_dict(orient="records")
              if r.get("status") != BASELINE}
    out = []
    for (task, strategy, model), g in ok.groupby(["task", "strategy", "model"], sort=False):
        found = [u for u in g["update"] if isinstance(u, dict)]
        if not found:
            continue
        facts = [u for u in found if not u.get("error")]
        errors = [str(u["error"]) for u in found if u.get("error")]
        row = prices.get((task, strategy, model), {})
        price, per_1k = row.get("price_usd_per_hour"), row.get("cost_per_1k_usd")
        seconds = _mean(facts, "seconds")
        if seconds == 0:  # nothing redone is free on any hardware, priced or not
            usd = 0.0
        else:
            usd = math.nan if is_missing(price) or math.isnan(seconds) else prepare_cost(seconds, float(price))
        monthly = usd * refresh
        serving = [math.nan if is_missing(per_1k) else float(per_1k) / 1000.0 * v for v in volumes]
        agree = [(f.get("check_agree"), f.get("check_queries")) for f in facts if f.get("check_queries")]
        out.append({"task": task, "strategy": strategy, "model": model,
                    "method": facts[0].get("method") if facts else None,
                    "estimate": any(bool(f.get("estimate")) for f in facts), "seconds": seconds,
                    "usd_per_update": usd, "refresh_per_month": refresh, "updates_usd_per_month": monthly,
                    "cost_per_1k_usd": per_1k, "monthly_volumes": volumes,
                    "monthly_totals_usd": [s + monthly for s in serving],
                    "full_rebuild_s": _mean(facts, "full_rebuild_s"),
                    "speedup": _mean(facts, "full_rebuild_s") / seconds if seconds and seconds > 0 else math.nan,
                    "check": (f"{sum(a for a, _ in agree)}/{sum(n for _, n in agree)} queries retrieve what a full "
                              "rebuild retrieves" if agree else None),
                    "source": facts[0].get("source") if facts else None, "detail": _detail(facts) if facts else "",
                    "error": "; ".join(errors) or None})
    return pd.DataFrame(out, columns=UPDATE_COLUMNS)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able rows for summary.json: NaN and inf (also inside the totals) become null."""
    def clean(v: Any) -> Any:
        if isinstance(v, list):
            return [clean(x) for x in v]
        if hasattr(v, "item"):
            v = v.item()
        return None if isinstance(v, float) and not math.isfinite(v) else v
    return [{k: clean(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]


def _seconds(value: Any) -> str:
    if is_missing(value) or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "0" if value == 0 else f"{value:.3g}" if value < 10 else f"{value:,.0f}"


def _failed(error: Any) -> str | None:
    return f"failed: {error}" if isinstance(error, str) and error else None


def table_rows(frame: pd.DataFrame, task: Any) -> list[dict[str, Any]]:
    """The task's rows formatted for the HTML and Markdown tables."""
    out = []
    for r in frame[frame["task"] == task].to_dict(orient="records"):
        how = (r["method"] if isinstance(r["method"], str) else "failed") + (" (estimate)" if r["estimate"] else "")
        out.append({"strategy": r["strategy"], "model": r["model"], "how": how, "seconds": _seconds(r["seconds"]),
                    "per_update": fmt_usd(r["usd_per_update"]), "updates_month": fmt_usd(r["updates_usd_per_month"]),
                    "per_1k": fmt_usd(r["cost_per_1k_usd"]), "totals": [fmt_usd(v) for v in r["monthly_totals_usd"]],
                    "detail": "; ".join(x for x in (r["detail"], r["check"], _failed(r["error"])) if isinstance(x, str) and x)})
    return out


def caption(frame: pd.DataFrame, task: Any) -> str | None:
    rows = frame[frame["task"] == task]
    if rows.empty:
        return None
    r = rows.iloc[0]
    refresh = f"{r['refresh_per_month']:g}"
    return (f"Corpus change: {r['source'] or 'configured change'}. A month = the queries served plus {refresh} "
            f"update(s) (refresh_per_month); an update is priced at the cell's hardware price for its seconds.")


def markdown(frame: pd.DataFrame, task: Any, escape) -> str | None:
    rows = table_rows(frame, task)
    if not rows:
        return None
    volumes = frame[frame["task"] == task].iloc[0]["monthly_volumes"]
    head = ["strategy", "how it becomes current", "s / update", "$ / update", "updates $ / month", "$ / 1k queries",
            *[f"month at {v:,} queries" for v in volumes]]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [escape(r["strategy"]), escape(r["how"]), r["seconds"], r["per_update"], r["updates_month"],
                 r["per_1k"], *r["totals"]]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {escape(r['strategy'])}: {escape(r['detail'])}" for r in rows if r["detail"]]
    return "\n".join([f"Update cost. {escape(caption(frame, task))}", "", *lines, *([""] + notes if notes else [])])

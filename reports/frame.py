"""The typed results frames that every report reads, and the metric preferences.

`load_run` turns a run folder (see `bench.store`) into two pandas frames and the
manifest. Damage is never hidden: a cell recorded ok whose rows are missing or
damaged (a bad checksum, a torn line) becomes "incomplete", with the counts in its
`error`, so every output (table, CSV, Markdown, HTML, JSON, compare) shows it and
`compare --fail-on-regression` fails on it. Reports read only these; they never touch strategies, models or indexes,
so a report renders on a laptop without torch. `PREFERENCES` says which direction
is better for each summary column (as PEFT's method_comparison/processing.py does),
so "best" is decided in one place instead of in each renderer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from bench.errors import BenchError
from bench import jsonl
from bench.store import CELL_FIELDS, ROW_FIELDS

Direction = Literal["higher", "lower"]

# Summary column -> which way is better. Columns absent here are not ranked.
PREFERENCES: dict[str, Direction] = {
    "score": "higher",
    "macro_f1": "higher",
    "exact_match": "higher",
    "f1": "higher",
    "recall_at_k": "higher",
    "latency_p50_ms": "lower",
    "latency_p95_ms": "lower",
    "prompt_tokens_mean": "lower",
    "completion_tokens_mean": "lower",
    "prepare_s": "lower",
    "predict_s": "lower",
    "queries_per_s": "higher",
    "prepare_cost_usd": "lower",
    "cost_per_1k_usd": "lower",
    "peak_memory_mb": "lower",
    "truncated_n": "lower",
}

KEYS = ["task", "strategy", "model"]
# Statuses of a cell whose numbers must not be counted.
NOT_OK = {"failed", "error", "skipped", "incomplete"}
# Status of a trivial-baseline row (reports.trivial): a reference, not a strategy that ran.
BASELINE = "baseline"

ROW_NUMERIC = ("seed", "score", "exact_match", "f1", "latency_s", "prompt_tokens",
               "completion_tokens", "recall_at_k")
CELL_NUMERIC = ("seed", "n", "prepare_s", "predict_s", "peak_memory_mb")


@dataclass(frozen=True)
class RunFrames:
    """One run, as read from its folder: per-example rows, per-cell records, manifest."""

    root: Path
    rows: pd.DataFrame
    cells: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    # file -> damaged lines skipped, and "unsigned" -> lines not signed by this user's key
    damage: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.manifest.get("run") or self.root.name)


def load_run(run_dir: str | Path) -> RunFrames:
    root = Path(run_dir)
    if not root.is_dir():
        raise BenchError(f"run folder {root} does not exist; pass the folder a `bench run` wrote "
                         "(it holds rows.jsonl and cells.jsonl)")
    if not (root / "rows.jsonl").exists() and not (root / "cells.jsonl").exists():
        raise BenchError(f"{root} holds no rows.jsonl or cells.jsonl; is it a run folder?")
    rows_read, cells_read = jsonl.read(root / "rows.jsonl"), jsonl.read(root / "cells.jsonl")
    rows = _frame(rows_read.records, ROW_FIELDS, ROW_NUMERIC)
    cells = _frame(cells_read.records, CELL_FIELDS, CELL_NUMERIC)
    # A resumed run may re-append a cell (failed first, finished later) and its rows:
    # the last record wins, as it is the newest attempt.
    if not cells.empty:
        cells = cells.drop_duplicates("cell", keep="last").reset_index(drop=True)
        cells["info"] = cells["info"].map(lambda v: v if isinstance(v, dict) else {})
        cells["status"] = cells["status"].fillna("ok")
    if not rows.empty:
        rows = rows.drop_duplicates(["cell", "example_id"], keep="last").reset_index(drop=True)
        rows["truncated"] = rows["truncated"].map(lambda v: bool(v) if v is not None else False)
    if not cells.empty:
        cells = _mark_incomplete(cells, rows, rows_read.bad_cells, root)
    damage = {"rows.jsonl": rows_read.bad, "cells.jsonl": cells_read.bad,
              "unsigned": rows_read.unsigned + cells_read.unsigned}
    return RunFrames(root=root, rows=rows, cells=cells, manifest=_manifest(root / "manifest.json"), damage=damage)


def _mark_incomplete(cells: pd.DataFrame, rows: pd.DataFrame, bad_cells: dict[str, int], root: Path) -> pd.DataFrame:
    """Cells recorded ok with fewer intact rows than their `n`: status "incomplete"."""
    found = rows.groupby("cell").size().to_dict() if not rows.empty else {}
    cells = cells.copy()
    missing, damaged = [], []
    for i, cell in cells.iterrows():
        n = cell["n"]
        lost = max(0, int(n) - int(found.get(cell["cell"], 0))) if isinstance(n, float) and math.isfinite(n) else 0
        bad = int(bad_cells.get(cell["cell"], 0))
        missing.append(lost)
        damaged.append(bad)
        if lost and str(cell["status"]) not in NOT_OK:  # a damaged line recomputed later is no loss
            cells.loc[i, "status"] = "incomplete"
            cells.loc[i, "error"] = (f"{lost} of {int(n)} rows missing from rows.jsonl ({bad} damaged line(s) of this "
                                     f"cell skipped); the cell's numbers are not used. Recompute them with "
                                     f"`bench run --resume {root}`")
    cells["rows_missing"], cells["rows_damaged"] = missing, damaged
    return cells


def _frame(records: list[dict[str, Any]], fields: tuple[str, ...],
           numeric: tuple[str, ...]) -> pd.DataFrame:
    """A frame with every schema column present (None when a writer left one out)."""
    extra = [k for r in records for k in r if k not in fields]
    columns = list(fields) + list(dict.fromkeys(extra))
    frame = pd.DataFrame.from_records(records, columns=columns) if records else pd.DataFrame(columns=columns)
    for col in numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame


def _manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = jsonl.loads_bounded(path.read_text(encoding="utf-8"))  # a run folder is untrusted: bounded
    except ValueError as exc:
        raise BenchError(f"{path} is not valid JSON ({exc}); re-run or delete it") from exc
    return data if isinstance(data, dict) else {"manifest": data}


def ok_rows(frames: RunFrames) -> pd.DataFrame:
    """Rows of cells recorded as finished: a failed cell's or an unrecorded cell's rows
    are not evidence for intervals or comparisons."""
    if frames.rows.empty or frames.cells.empty:
        return frames.rows.iloc[0:0]
    ok = frames.cells.loc[~frames.cells["status"].astype(str).isin(NOT_OK), "cell"]
    return frames.rows[frames.rows["cell"].isin(set(ok))]


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def best_index(frame: pd.DataFrame, column: str) -> Any | None:
    """Index label of the best row by `column` per `PREFERENCES`; None when nothing ranks."""
    values = pd.to_numeric(frame[column], errors="coerce").dropna() if column in frame else pd.Series()
    if values.empty:
        return None
    return values.idxmax() if PREFERENCES.get(column, "higher") == "higher" else values.idxmin()

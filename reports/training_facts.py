"""What weight-changing cells recorded, per summary row: forgetting, trainable
parameters, training tokens/s and memory, saved size, best validation loss; and for
sensitivity sweeps (entries labelled `name(k=v)`, bench/sweeps.py) the spread of the
score across settings and which setting the validation loss picked (never the test score).

Read from the cells' `info` facts only (the run folder); strategies without training
leave these columns empty.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.sweeps import parse_label, pick
from reports.frame import KEYS, NOT_OK, RunFrames

FACTS = {"forgetting": "forgetting", "forgetting_ci_low": "forgetting_ci_low",
         "forgetting_ci_high": "forgetting_ci_high", "forgetting_lm_loss": "forgetting_lm_loss",
         "trainable_params": "trainable_params", "train_tokens_per_s": "tokens_per_s",
         "train_peak_memory_mb": "train_peak_memory_mb", "saved_bytes": "saved_bytes",
         "best_val_loss": "best_val_loss"}
SWEEP = ["sweep_group", "sweep_setting", "sweep_picked", "sweep_score_spread"]
COLUMNS = list(FACTS) + SWEEP


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def add_training_facts(summary: pd.DataFrame, frames: RunFrames) -> pd.DataFrame:
    out = summary.copy()
    for col in COLUMNS:
        out[col] = math.nan if col not in ("sweep_group", "sweep_setting", "sweep_picked") else None
    cells = frames.cells
    if cells.empty or "info" not in cells:
        return out
    ok = cells[~cells["status"].fillna("ok").astype(str).isin(NOT_OK)] if "status" in cells else cells
    for i, row in out.iterrows():
        mine = ok[(ok["task"] == row["task"]) & (ok["strategy"] == row["strategy"]) & (ok["model"] == row["model"])]
        infos = [v for v in mine["info"] if isinstance(v, dict)]
        for col, key in FACTS.items():
            values = [x for x in (_number(info.get(key)) for info in infos) if not math.isnan(x)]
            out.at[i, col] = sum(values) / len(values) if values else math.nan
    _mark_sweeps(out)
    return out


def _mark_sweeps(out: pd.DataFrame) -> None:
    labels = {i: parse_label(s) for i, s in out["strategy"].items()}
    groups: dict[tuple, list] = {}
    for i, parsed in labels.items():
        if parsed:
            groups.setdefault((out.at[i, "task"], out.at[i, "model"], parsed[0]), []).append(i)
    for (_, _, group), rows in groups.items():
        settings = {labels[i][1]: i for i in rows}
        chosen = pick({s: [out.at[i, "best_val_loss"]] for s, i in settings.items()})
        scores = [float(out.at[i, "score"]) for i in rows if pd.notna(out.at[i, "score"])]
        spread = max(scores) - min(scores) if len(scores) > 1 else math.nan
        for setting, i in settings.items():
            out.at[i, "sweep_group"], out.at[i, "sweep_setting"] = group, setting
            out.at[i, "sweep_picked"] = setting == chosen
            out.at[i, "sweep_score_spread"] = spread

"""The per-example drill-down of report.html: input, target, each strategy's output
and whether it was right, with filters such as "rag right, lora wrong".

Each example row carries a mark string, one letter per strategy column: `r` right
(score 1), `w` wrong (score 0), `p` partial (a token F1 between), `-` no answer. A
filter is a pattern over the same columns (`*` any, `n` not right); `drill.js` applies
it in the browser, and `matches` here is its reference, so the preset counts printed
beside each filter are the rows the filter will show. Without JavaScript every row
shows and the filters stay hidden.
"""
from __future__ import annotations

import itertools
from typing import Any

from reports.frame import RunFrames, is_missing
from reports.page import clip

DRILL_LIMIT = 200  # examples per task: a 60-example run shows all; 10k would bloat the page
OUTPUT_LIMIT = 200
CHOICES = [("*", "any"), ("r", "right"), ("w", "wrong"), ("p", "partial"), ("n", "not right")]


def mark(score: float | None) -> tuple[str, str, str]:
    """(letter, symbol, css class) for one output's score."""
    if score is None or is_missing(score):
        return "-", "", ""
    if score >= 1:
        return "r", "✓", "right"
    if score <= 0:
        return "w", "✗", "wrong"
    return "p", f"{score:.2f}", "partial"


def matches(marks: str, pattern: str) -> bool:
    """Whether a row's marks fit a filter pattern (the same rule as drill.js)."""
    for have, want in zip(marks, pattern):
        if want == "*":
            continue
        if want == "n":
            if have in ("r", "-"):
                return False
        elif have != want:
            return False
    return True


def presets(columns: list[str], marks: list[str], partial: bool) -> list[dict[str, Any]]:
    """"a right, b wrong" for each ordered pair of strategies, with its row count; pairs
    that no example fits are left out (a dead link wastes the reader's minute)."""
    out = []
    for (i, a), (j, b) in itertools.permutations(enumerate(columns), 2):
        pattern = "".join("r" if k == i else "n" if k == j else "*" for k in range(len(columns)))
        count = sum(matches(m, pattern) for m in marks)
        if count:
            out.append({"text": f"{a} right, {b} {'not right' if partial else 'wrong'}", "pattern": pattern,
                        "count": count})
    return out


def drill(frames: RunFrames, task: str, labels: dict, index: int) -> dict[str, Any]:
    """Examples x strategies for one task. With several seeds the lowest seed stands for
    the cell (outputs differ little, and one output per cell keeps the table readable)."""
    rows = frames.rows[frames.rows["task"] == task]
    empty = {"index": index, "columns": [], "examples": [], "total": 0, "presets": [], "choices": CHOICES}
    if rows.empty:
        return empty
    rows = rows.sort_values("seed", kind="stable").drop_duplicates(["strategy", "model", "example_id"])
    present = set(zip(rows["strategy"], rows["model"]))
    keys = [key for key in labels if key in present]
    columns = [labels[key] for key in keys]
    ids = list(dict.fromkeys(rows["example_id"]))
    by_id = {ex_id: g for ex_id, g in rows.groupby("example_id", sort=False)}
    examples = []
    for ex_id in ids[:DRILL_LIMIT]:
        ex = by_id[ex_id]
        outs = {(r.strategy, r.model): r for r in ex.itertuples()}
        cells, letters = [], []
        for key in keys:
            r = outs.get(key)
            letter, symbol, cls = mark(None if r is None else r.score)
            letters.append(letter)
            cells.append({"output": clip(None if r is None else r.output, OUTPUT_LIMIT), "mark": symbol, "cls": cls})
        first = ex.iloc[0]
        answered = {x for x in letters if x != "-"}
        examples.append({"id": str(ex_id), "input": clip(first["input"]), "target": clip(first["target"]),
                         "cells": cells, "marks": "".join(letters), "disagree": len(answered) > 1})
    marks = [e["marks"] for e in examples]
    partial = any("p" in m for m in marks)
    return {"index": index, "columns": columns, "examples": examples, "total": len(ids),
            "presets": presets(columns, marks, partial) if len(columns) > 1 else [], "choices": CHOICES,
            "disagree_n": sum(e["disagree"] for e in examples)}


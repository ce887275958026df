"""Predicting one cell so that nothing finished is computed twice.

The test examples are answered in fixed chunks (`RunConfig.checkpoint_every`), in
order. After each chunk its scored rows are appended to the cell's checkpoint
(`RunStore.append_partial`), so after a crash only unfinished chunks run again. A
chunk is always predicted whole, by the same call an uninterrupted run makes, so the
batches (and their padding) match and a resumed run's outputs equal an uninterrupted
run's. Rows found in the checkpoint or in the prediction cache are not predicted;
cached ones carry `"cached": true` and keep the latency measured when they were
computed.

A CUDA out-of-memory error in predict halves the strategy's prediction batch and
retries the chunk, down to 1; what was used is recorded.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.cache import PredictionCache, code_version, content_key, prediction_from

# Options that change where things are kept, not what is predicted.
_NOT_IN_KEY = {"cache"}


def strategy_config(strategy, options: dict[str, Any]) -> dict[str, Any]:
    """The strategy's full, normalised config (defaults included), for cache keys."""
    config = getattr(strategy, "config", None)
    values = asdict(config) if is_dataclass(config) else dict(options)
    return {k: v for k, v in values.items() if k not in _NOT_IN_KEY}


def prepare_config(definition, strategy, options: dict[str, Any]) -> dict[str, Any]:
    """`strategy_config` less the prediction batch, which shapes no prepared artifact:
    a run at another --batch-size reuses the adapter."""
    return {k: v for k, v in strategy_config(strategy, dict(options)).items() if k != definition.predict_batch}


def prediction_key(definition, config: dict[str, Any], handle, task_fingerprint: str,
                   seed: int, train_limit: int | None, batch_size: int) -> str:
    """The definition's code modules (all that shape its answers) and the backend's."""
    code = code_version(*definition.code, *_backend_code(handle))
    return content_key({"kind": "predictions", "strategy": definition.name, "config": config,
                        "model": handle.fingerprint, "device": str(handle.device),
                        "dtype": (handle.extra or {}).get("dtype"), "max_context": handle.max_context,
                        "task": task_fingerprint, "seed": seed, "train_limit": train_limit,
                        "batch_size": batch_size, "code": code})


def _backend_code(handle) -> tuple[str, ...]:
    """The bench's own backend modules the handle runs (a test double subclassing one counts it)."""
    return tuple(dict.fromkeys(c.__module__ for c in type(handle).__mro__ if c.__module__.startswith("bench.")))


@dataclass
class PredictStats:
    resumed_n: int = 0  # rows taken from this cell's checkpoint
    cached_n: int = 0  # rows served from the prediction cache
    computed_n: int = 0  # rows predicted now
    measured_s: float = 0.0  # wall seconds of the chunks predicted now
    reused_s: float = 0.0  # the original seconds of resumed and cached rows
    oom_retries: int = 0
    batch_size_used: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def predict_s(self) -> float:
        return self.measured_s + self.reused_s


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(exc, torch.cuda.OutOfMemoryError)


class CellPredictor:
    def __init__(self, strategy, artifacts, definition, options: dict[str, Any], stats: PredictStats) -> None:
        self.strategy, self.artifacts, self.name = strategy, artifacts, definition.name
        self.rebuild, self.options, self.stats = definition.build, dict(options), stats
        key = definition.predict_batch
        self.batch_key = key
        self.batch = getattr(getattr(strategy, "config", None), key, None) if key else None

    def predict(self, examples: Sequence[Any], progress=None) -> list[Any]:
        while True:
            try:
                return self.strategy.predict(self.artifacts, examples, progress=progress)
            except Exception as exc:
                if not _is_oom(exc) or not isinstance(self.batch, int) or self.batch <= 1:
                    raise
                self._halve()

    def _halve(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.batch = max(1, self.batch // 2)
        self.options[self.batch_key] = self.batch
        self.strategy = self.rebuild(self.options)
        self.stats.oom_retries += 1
        self.stats.batch_size_used = self.batch
        self.stats.notes.append(f"CUDA out of memory in predict: batch halved to {self.batch}")


def predict_cell(predictor: CellPredictor, examples: Sequence[Any], score: Callable[[list, list], list[dict]],
                 done: dict[str, dict], cache: PredictionCache | None, checkpoint: Callable[[list[dict]], None],
                 on_chunk: Callable[[list[str]], None], chunk: int, progress=None) -> list[dict]:
    """Scored rows for `examples`, in order. `done` maps example id -> a row already
    stored for this cell (and this prediction context)."""
    stats = predictor.stats
    cached = cache.get() if cache is not None else {}
    rows: dict[str, dict] = {}
    for ex in examples:
        if ex.id in done:
            rows[ex.id] = done[ex.id]
            stats.resumed_n += 1
            stats.reused_s += float(done[ex.id].get("wall_s") or done[ex.id].get("latency_s") or 0.0)
    if stats.resumed_n and progress:
        progress(stats.resumed_n)
    for start in range(0, len(examples), chunk):
        todo = [ex for ex in examples[start:start + chunk] if ex.id not in rows]
        if not todo:
            continue
        hits = [ex for ex in todo if ex.id in cached]
        new: list[dict] = []
        if hits:
            new += score(hits, [prediction_from(cached[ex.id]) for ex in hits])
            for row in new:
                row["cached"] = True
                row["wall_s"] = cached[row["example_id"]].get("wall_s")
                stats.reused_s += float(row["wall_s"] or row["latency_s"] or 0.0)
            stats.cached_n += len(hits)
            if progress:
                progress(len(hits))
        compute = [ex for ex in todo if ex.id not in cached]
        if compute:
            on_chunk([ex.id for ex in compute])
            t0 = time.perf_counter()
            predictions = predictor.predict(compute, progress=progress)
            wall = time.perf_counter() - t0
            fresh = score(compute, predictions)
            for row in fresh:
                row["cached"] = False
                row["wall_s"] = wall / len(compute)
            stats.computed_n += len(compute)
            stats.measured_s += wall
            new += fresh
        checkpoint(new)
        rows.update((row["example_id"], row) for row in new)
    return [rows[ex.id] for ex in examples]


# -- glue for `bench.execute` ----------------------------------------------------------
def prepare_context(definition, strategy, spec, task, handle) -> str:
    """The key of a cell's prepared artifacts (the cache's, and its run-folder checkpoint's)."""
    from bench import prepared

    return prepared.context_key(definition, prepare_config(definition, strategy, spec.strategy.options),
                                handle.fingerprint, task.fingerprint(), spec.seed, spec.train_limit,
                                str(handle.device), _backend_code(handle))


def prepare_cell(channel, cfg, spec, task, strategy, handle, budget) -> tuple[Any, dict]:
    """`strategy.prepare`, or its cached result. The facts say whether it was cached;
    `prepare_s` is then the original training time, never the time of the hit. A
    strategy that declares how its artifacts are saved gets them written to
    `budget.workdir/prepared/` whatever the cache setting (`written`: their facts and
    hashes), the folder its run-folder checkpoint names (bench/checkpoint.py)."""
    from bench import prepared
    from strategies import definition as definition_of

    definition = definition_of(spec.strategy.name)
    key = prepare_context(definition, strategy, spec, task, handle)
    stores = definition.artifacts is not None
    folder = Path(budget.workdir) / "prepared" if stores and budget.workdir is not None else None
    cache = stores and getattr(cfg, "cache", True)
    if cache:
        hit = prepared.load(key, definition, task, handle, budget.workdir)
        if hit is not None:  # `load` copied the entry into `folder`
            return hit[0], {"prepare_cached": True, "prepare_s": hit[1], "prepare_key": key, "saved": False,
                            "prepare_from": "cache", "written": hit[2] if folder is not None else None}
    channel.event("prepare", cell=spec.cell)
    t0 = time.perf_counter()
    artifacts = strategy.prepare(task, handle, budget)  # a NaN loss raises here: nothing is cached
    seconds = time.perf_counter() - t0
    written, notes = None, []
    if folder is not None:
        try:
            written = prepared.write(definition, artifacts, folder)
        except Exception as exc:  # noqa: BLE001 (a checkpoint that cannot be written must not fail the cell)
            notes.append(f"prepared artifacts not checkpointed in the run folder: {type(exc).__name__}: {exc}")
    saved = cache and prepared.save(key, definition, artifacts, seconds,
                                    (folder, written) if written else None) is not None
    return artifacts, {"prepare_cached": False, "prepare_s": seconds, "prepare_key": key, "saved": saved,
                       "prepare_from": "computed", "written": written, "notes": notes}


def prediction_digest(cfg, spec, task, strategy, handle) -> str:
    """The prediction context of a cell: its rows, checkpointed or cached, count only under it."""
    from strategies import definition as definition_of

    definition = definition_of(spec.strategy.name)
    config = strategy_config(strategy, dict(spec.strategy.options))
    return prediction_key(definition, config, handle, task.fingerprint(), spec.seed, spec.train_limit,
                          cfg.batch_size)


def resumable(stored: list[dict], digest: str, examples) -> dict[str, dict]:
    """example id -> a stored row of this prediction context, for the examples asked."""
    ids = {ex.id for ex in examples}
    return {r["example_id"]: r for r in stored if r.get("pred_digest") == digest and r.get("example_id") in ids}


def uncached(cache: PredictionCache | None, examples, done: dict[str, dict]) -> int:
    """How many of `examples` a cell will compute: neither in its checkpoint (`done`) nor
    in the prediction cache (a cell served whole from the cache needs no warm-up)."""
    cached = cache.get() if cache is not None else {}
    return sum(1 for ex in examples if ex.id not in done and ex.id not in cached)


def predict_rows(channel, cfg, spec, strategy, artifacts, examples, digest: str, done: dict[str, dict],
                 cache: PredictionCache | None, score: Callable[[list, list], list[dict]],
                 progress=None) -> tuple[list[dict], PredictStats]:
    """Scored rows of the cell under prediction context `digest`, resuming from `done`
    (its rows in the run folder, `resumable`) and `cache`. Each chunk's rows go out
    through `channel`."""
    from strategies import definition as definition_of

    entry, cell = spec.strategy, spec.cell
    definition = definition_of(entry.name)
    stats = PredictStats()
    predictor = CellPredictor(strategy, artifacts, definition, dict(entry.options), stats)

    def scored(exs, preds):
        rows = score(exs, preds)
        for row in rows:
            row["pred_digest"] = digest
        return rows

    rows = predict_cell(predictor, examples, scored, done, cache, lambda rs: channel.chunk(cell, rs),
                        lambda chunk_ids: channel.event("predict", cell=cell, ids=chunk_ids),
                        max(1, getattr(cfg, "checkpoint_every", 32)), progress)
    if cache is not None and cache.damaged:
        stats.notes.append(f"prediction cache: {cache.damaged} damaged line(s) skipped and recomputed")
    return rows, stats


def finish_cell(cfg, rows: list[dict], digest: str) -> None:
    """An ok cell's predictions into this node's prediction cache."""
    if getattr(cfg, "cache", True):
        PredictionCache(digest).put(rows)

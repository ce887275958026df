"""Running one cell from its spec: `execute(spec, worker, channel, checkpoint) -> CellResult`.

A `Worker` holds what cells share and loads each once: the tasks, the model (one at
a time: cells arrive grouped by model), the strategy objects. It writes nothing to
the run folder; what a cell produces travels through a `Channel`:
- `event(name, **fields)`: an audit line (a prepare, a predict chunk) for events.jsonl;
- `chunk(cell, rows)`: the scored rows of one checkpoint chunk, so a worker that dies
  loses at most the chunk it was computing;
- `prepared(cell, ref, folder)`: right after `prepare`, what it made (its facts, and
  the folder its artifacts were saved to), so a run killed before the cell's record
  does not prepare it again (bench/checkpoint.py);
and, at the end, the returned `CellResult` (record, rows, artifacts). The executor's
driver hands both to the `ResultSink`, the only writer of the run folder.

A cell runs in three steps, so an executor can probe the latency of a group of cells
(one task x model) together after all of them are predicted: `start` (prepare, warm
up, predict, score), `probe_cells` (batch-1 latency; a variant may change artifacts
in place, so it comes after predicting), `complete` (the record). `execute` chains
them for one cell. A failing cell becomes a failed record; the run goes on.
"""
from __future__ import annotations

import datetime as _dt
import gc
import os
import socket
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from bench.errors import BenchError
from bench.grid import CellSpec
from bench.resources import pin_allocator, release_memory


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Channel(Protocol):
    def event(self, name: str, **fields: Any) -> None: ...

    def chunk(self, cell: str, rows: list[dict]) -> None: ...

    def prepared(self, cell: str, ref: dict, folder: Path | None) -> None: ...


@dataclass
class CellResult:
    cell: str
    record: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    artifact_dir: str | None = None  # where the worker left the cell's artifacts
    files: dict[str, bytes] | None = None  # their bytes, when the driver cannot read that folder
    in_place: bool = False  # the folder is on a path shared with the driver: leave it there

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "ok"


def recall_at_k(retrieved: list[str], gold: list[str]) -> float | None:
    if not gold or not retrieved:
        return None if not gold else 0.0
    return float(any(doc in retrieved for doc in gold))


def score_rows(cell: str, task, strategy_label: str, model_name: str, seed: int, examples, predictions):
    from bench.metrics import score_example

    rows = []
    for ex, pred in zip(examples, predictions):
        if pred.example_id != ex.id:
            raise BenchError(f"strategy {strategy_label!r} answered {pred.example_id!r} where {ex.id!r} was "
                             "expected; predictions must keep the order of the examples")
        scores = score_example(task.metric, pred.output, ex.answers)
        gold = list(ex.meta.get("doc_ids") or [])
        rows.append({
            "cell": cell, "task": task.name, "strategy": strategy_label, "model": model_name, "seed": seed,
            "example_id": ex.id, "input": ex.input, "target": ex.target, "output": pred.output,
            **({"answers": ex.answers} if len(ex.answers) > 1 else {}),
            "score": scores["score"], "exact_match": scores.get("exact_match"), "f1": scores.get("f1"),
            "latency_s": pred.latency_s, "prompt_tokens": pred.prompt_tokens,
            "completion_tokens": pred.completion_tokens, "retrieved_ids": list(pred.retrieved_ids),
            "recall_at_k": recall_at_k(list(pred.retrieved_ids), gold) if pred.retrieved_ids else None,
            "truncated": pred.truncated, "first_token_s": pred.first_token_s, "retrieval_s": pred.retrieval_s,
            "scoring": getattr(pred, "scoring", None)})
    return rows


def node_facts(device: str, node: str | None = None) -> dict[str, Any]:
    """Where a cell ran: the node, the device, the GPU model and count, the CPU; what
    its cost is priced from."""
    from bench.manifest import cpu_model

    facts: dict[str, Any] = {"node": node or socket.gethostname(), "device": str(device), "gpu": None,
                             "gpu_count": 0, "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    if str(device).startswith("cuda"):
        import torch

        index = int(str(device).partition(":")[2] or torch.cuda.current_device())
        facts.update(gpu=torch.cuda.get_device_name(index), gpu_count=torch.cuda.device_count())
    return facts


class Worker:
    """The loaded tasks, model and strategies of one process (this one, or a Ray actor)."""

    def __init__(self, config, log: Callable[..., None] | None = None, open_bar=None,
                 workdir: Callable[[str], Path] | None = None, node: str | None = None, tasks=(),
                 run_dir: Path | None = None) -> None:
        pin_allocator()  # before the model loads: every process that runs cells builds a Worker
        self.config = config
        self.run_dir = run_dir  # where a managed server writes its log (the driver's folder, locally)
        self.log = log or (lambda *a, **k: None)
        self.open_bar = open_bar  # opens a progress bar per phase (bench.progress), or None
        self._workdir = workdir
        self.node = node
        self._tasks = {}  # (entry, data_seed) -> Task
        for entry, task in tasks:
            self._tasks[(entry, config.data_seed)] = task
        self._model_entry: Any = None
        self._model = None
        self._strategies: dict[str, Any] = {}

    def task(self, spec: CellSpec):
        key = (spec.task.entry, spec.task.data_seed)
        if key not in self._tasks:
            import tasks

            task = tasks.load_task(spec.task.entry, seed=spec.task.data_seed)
            if len(task.test) < 2:  # one example gives a score without any spread: never a silent result
                raise BenchError(f"task {task.name!r} has {len(task.test)} test example(s); at least 2 are "
                                 "needed for a score with an interval. Add examples or give a larger test file.")
            self._tasks[key] = task
        return self._tasks[key]

    def model(self, entry: Any):
        if self._model is None or self._model_entry != entry:
            self.release_model()
            self._model = self._load_model(entry)
            self._model_entry = entry
        return self._model

    def _load_model(self, entry: Any):
        from bench import backends

        cfg = self.config
        return backends.load_lm(backends.ModelSpec.parse(entry, "a cell's model"), device=cfg.device,
                                max_context=cfg.max_context, trust_remote_code=cfg.trust_remote_code,
                                log=self.log, run_dir=self.run_dir, dtype=getattr(cfg, "dtype", "auto"))

    def release_model(self) -> None:
        if self._model is not None:
            from bench.backends import close_lm

            close_lm(self._model)  # stops a server the backend started
        self._model, self._model_entry = None, None
        gc.collect()

    def strategy(self, spec: CellSpec):
        label = spec.strategy.label
        if label not in self._strategies:
            from strategies import STRATEGIES

            self._strategies[label] = STRATEGIES.load(spec.strategy.name).build(dict(spec.strategy.options))
        return self._strategies[label]

    def workdir(self, cell: str) -> Path:
        if self._workdir is not None:
            return Path(self._workdir(cell))
        import tempfile

        from bench.store import safe_name

        path = Path(tempfile.gettempdir()) / "adaptbench-cells" / safe_name(cell)
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Started:
    """A cell predicted and scored, waiting for its latency probe."""

    spec: CellSpec
    task: Any
    strategy: Any
    artifacts: Any
    examples: list
    record: dict[str, Any]
    rows: list[dict[str, Any]]
    workdir: Path
    prep: dict[str, Any]  # how the artifacts came (bench/checkpoint.py), their `info` among it


def _failed(spec: CellSpec, record: dict[str, Any], exc: BaseException, prep: dict | None, worker) -> CellResult:
    if prep and prep.get("saved"):
        from bench import prepared

        prepared.evict(prep["prepare_key"])  # a failed cell caches nothing
    message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
    record.update(status="failed", error=message, traceback=traceback.format_exc(limit=8), finished_at=now())
    worker.log(f"[red]  failed: {message}[/]")
    return CellResult(spec.cell, record)


def start(spec: CellSpec, worker: Worker, channel: Channel, checkpoint=None) -> Started | CellResult:
    """Prepare, warm up, predict and score one cell, resuming from its `checkpoint` in
    the run folder (a `bench.checkpoint.Checkpoint`): a cell whose rows are all there
    is not predicted, and its artifacts are loaded only if something needs them."""
    from bench.cache import PredictionCache
    from bench.cells import prediction_digest, predict_rows, resumable, uncached
    from bench.checkpoint import Checkpoint, resume_or_prepare
    from bench.jsonl import DiskFullError
    from bench.latency import warm_up
    from bench.resources import EnergyMeter, PeakMemory, Stopwatch
    from strategies.base import Budget

    cfg, cell, label, model_name = worker.config, spec.cell, spec.strategy.label, spec.model_label
    record: dict[str, Any] = {"cell": cell, "task": spec.task.name, "strategy": label, "model": model_name,
                              "backend": _backend(spec.model), "seed": spec.seed, "metric": None, "n": None, "device": None, "started_at": now(),
                              "error": None, "info": {}}
    prep: dict[str, Any] = {}
    ckpt = checkpoint if checkpoint is not None else Checkpoint()
    try:
        task = worker.task(spec)
        handle = worker.model(spec.model)
        strategy = worker.strategy(spec)
        examples = task.test[: spec.limit] if spec.limit else list(task.test)
        workdir = worker.workdir(cell)
        record.update(metric=task.metric, n=len(examples), device=handle.device,
                      dtype=(getattr(handle, "extra", None) or {}).get("dtype"),
                      hardware=node_facts(handle.device, worker.node))
        open_bar = worker.open_bar or _quiet_bar
        budget = Budget(seed=spec.seed, max_train_examples=spec.train_limit, workdir=workdir,
                        batch_size=cfg.batch_size, progress=worker.open_bar, cache=getattr(cfg, "cache", True))
        worker.log(f"[bold]{task.name}[/] x [bold]{label}[/] x {model_name} (seed {spec.seed}): "
                   f"{len(examples)} test examples")
        digest = prediction_digest(cfg, spec, task, strategy, handle)
        done = resumable(ckpt.rows, digest, examples)
        cache = PredictionCache(digest) if getattr(cfg, "cache", True) else None
        left = len(examples) - len(done)
        # The probes and a corpus change's update run the strategy on its artifacts.
        needed = bool(left) or cfg.latency_sample > 0 or getattr(cfg, "corpus_change", None) is not None
        with PeakMemory() as mem_prepare, Stopwatch():
            artifacts, prep = resume_or_prepare(channel, cfg, spec, task, strategy, handle, budget, ckpt, needed)
        if left and uncached(cache, examples, done):
            # warm-up first, so the timed pass does not pay for first-call costs
            warm_up(strategy, artifacts, examples, cfg.warmup)
        with PeakMemory() as mem_predict, EnergyMeter(handle.device) as energy:
            with open_bar(f"{task.name}/{label}: predict", len(examples)) as bar:
                rows, pstats = predict_rows(
                    channel, cfg, spec, strategy, artifacts, examples, digest, done, cache,
                    lambda exs, preds: score_rows(cell, task, label, model_name, spec.seed, exs, preds),
                    progress=bar.advance)
        record["energy_j"] = energy.joules
        # Cached work reports the seconds it took when computed, never the hit's.
        record.update(prepare_cached=prep["prepare_cached"], prepare_from=prep["prepare_from"],
                      resumed_n=pstats.resumed_n, cached_n=pstats.cached_n,
                      computed_n=pstats.computed_n, truncated_n=sum(bool(r.get("truncated")) for r in rows),
                      pred_digest=digest, predict_oom_retries=pstats.oom_retries,
                      predict_batch_size_used=pstats.batch_size_used, notes=[*prep["notes"], *pstats.notes],
                      scoring="/".join(sorted({str(r.get("scoring")) for r in rows if r.get("scoring")})) or None,
                      prepare_s=prep["prepare_s"], predict_s=pstats.predict_s,
                      peak_memory_mb=max(mem_prepare.rss_mb, mem_predict.rss_mb),
                      peak_memory_prepare_mb=mem_prepare.rss_mb, peak_memory_predict_mb=mem_predict.rss_mb,
                      peak_gpu_memory_mb=max(filter(None, [mem_prepare.gpu_mb, mem_predict.gpu_mb]), default=None))
        if pstats.resumed_n or pstats.cached_n or prep["prepare_from"] != "computed":
            worker.log(f"  reused: {pstats.resumed_n} checkpointed, {pstats.cached_n} cached rows; "
                       f"prepared artifacts: {prep['prepare_from']}")
        for note in prep["notes"]:
            if note not in ckpt.notes:  # the sink reported those when it read the checkpoint
                worker.log(f"[yellow]  {note}[/]")
        return Started(spec, task, strategy, artifacts, list(examples), record, rows, workdir, prep)
    except (KeyboardInterrupt, DiskFullError):
        raise  # a full disk fails every later write too: stop, keeping what is stored
    except Exception as exc:  # one bad cell must not cost the others
        return _failed(spec, record, exc, prep, worker)


def probe_cells(started: list[Started], worker: Worker) -> list[Started | CellResult]:
    """Batch-1 latency of each started cell: together through `bench.latency.probe_group`
    when that exists and several cells of one task share the queries, else one by one."""
    from bench import latency

    cfg = worker.config
    group = getattr(latency, "probe_group", None)
    out: list[Started | CellResult] = []
    if group is not None and len(started) > 1 and len({id(s.task) for s in started}) == 1:
        try:
            entries = [(s.spec.cell, s.strategy, s.artifacts) for s in started]  # cell ids: unique across seeds
            found = group(entries, started[0].examples, cfg.latency_sample, cfg.warmup, open_bar=worker.open_bar)
            for s in started:
                s.record["latency"] = found.get(s.spec.cell, {})
            return list(started)
        except Exception as exc:  # noqa: BLE001 (a failed probe fails the group's cells, not the run)
            return [_failed(s.spec, s.record, exc, s.prep, worker) for s in started]
    for s in started:
        try:
            s.record["latency"] = latency.probe_cell(s.strategy, s.artifacts, s.examples, cfg.latency_sample,
                                                     cfg.warmup, worker.open_bar,
                                                     f"{s.task.name}/{s.spec.strategy.label}")
            out.append(s)
        except Exception as exc:  # noqa: BLE001
            out.append(_failed(s.spec, s.record, exc, s.prep, worker))
    return out


def complete(item: Started | CellResult, worker: Worker) -> CellResult:
    """The cell's result; an ok cell's predictions go into this node's cache."""
    from bench.cells import finish_cell

    if isinstance(item, CellResult):
        return item
    rec, rows = item.record, item.rows
    # No artifacts: a checkpointed cell that nothing needed them for; its facts are the checkpoint's.
    rec.update(status="ok", info=dict(item.artifacts.info if item.artifacts is not None else item.prep["info"]))
    if getattr(worker.config, "corpus_change", None) is not None:  # after predicting: scores use the old corpus
        from bench.updates import describe, measure_cell

        update = measure_cell(worker.config, item.spec, item.task, item.strategy, item.artifacts, rec, worker.open_bar)
        if update is not None:
            rec["update"] = update
            worker.log(f"  {describe(update)}")
    rec["finished_at"] = now()
    mean = sum(r["score"] for r in rows) / len(rows)
    worker.log(f"  {item.task.metric} {mean:.3f}, prepare {rec['prepare_s']:.1f}s, predict {rec['predict_s']:.1f}s")
    finish_cell(worker.config, rows, rec["pred_digest"])
    item.artifacts = None  # frees the cell's adapter (and any private copy) before the next cell
    release_memory()  # and hands the freed heap back: RSS does not keep the largest cell's working set
    return CellResult(item.spec.cell, rec, rows, artifact_dir=str(item.workdir))


def execute(spec: CellSpec, worker: Worker, channel: Channel, checkpoint=None) -> CellResult:
    """One cell, start to end."""
    begun = start(spec, worker, channel, checkpoint)
    if isinstance(begun, CellResult):
        return begun
    (probed,) = probe_cells([begun], worker)
    return complete(probed, worker)


def _backend(entry: Any) -> str:
    return str(entry.get("backend", "hf")) if isinstance(entry, dict) else "hf"


def _quiet_bar(description: str, total: int | None):
    from bench.progress import phase

    return phase(None, description, total)

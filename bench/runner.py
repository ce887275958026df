"""Runs the grid: task x strategy x model x seed, one cell at a time.

Per cell: prepare (timed) -> predict on the first `limit` test examples (timed) ->
score each example -> append rows and a cell record to the run's store. A failing
cell is recorded with its error and the run goes on; cells already recorded as ok in
the run folder are skipped, so re-running the same config continues where it stopped.
The model is loaded once per model spec and shared by every strategy.
"""
from __future__ import annotations

import datetime as _dt
import gc
import traceback
from pathlib import Path
from typing import Any

from bench.config import RunConfig
from bench.errors import BenchError
from bench.store import RunStore, cell_id


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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
            "score": scores["score"], "exact_match": scores.get("exact_match"), "f1": scores.get("f1"),
            "latency_s": pred.latency_s, "prompt_tokens": pred.prompt_tokens,
            "completion_tokens": pred.completion_tokens, "retrieved_ids": list(pred.retrieved_ids),
            "recall_at_k": recall_at_k(list(pred.retrieved_ids), gold) if pred.retrieved_ids else None,
            "truncated": pred.truncated})
    return rows


class Runner:
    def __init__(self, config: RunConfig, console=None, log=None) -> None:
        self.config = config
        self.console = console
        self.log = log or (console.print if console else print)
        self.store = RunStore(config.run_dir)

    def _done_cells(self) -> set[str]:
        return {c["cell"] for c in self.store.read_cells() if c.get("status") == "ok"}

    def run(self) -> Path:
        from bench.manifest import build_manifest
        from strategies import STRATEGIES
        from tasks import TASKS

        cfg = self.config
        specs = cfg.strategy_specs()
        for spec in specs:  # fail on a typo before loading anything heavy
            STRATEGIES.check(spec.name)
        for name in cfg.tasks:
            if not name.endswith((".yaml", ".yml")):
                TASKS.check(name)
        builders = {spec.label: STRATEGIES.load(spec.name) for spec in specs}
        strategies = {spec.label: builders[spec.label](dict(spec.options)) for spec in specs}
        manifest = build_manifest(cfg.to_dict(), {"run": cfg.name, "models": {}, "tasks": {}})
        self.store.write_json("manifest.json", manifest)
        done = self._done_cells()
        # Tasks first: a bad data file stops the run before a model is loaded.
        tasks = [self._load_task(name) for name in cfg.tasks]
        with self._phases() as phases:
            for model_name in cfg.models:
                handle = self._load_model(model_name)
                manifest["models"][model_name] = {"fingerprint": handle.fingerprint, "device": handle.device,
                                                  **handle.extra}
                for task in tasks:
                    manifest["tasks"][task.name] = {
                        "fingerprint": task.fingerprint(), "source": task.source,
                        "sizes": {s: len(task.split(s)) for s in ("train", "validation", "test")},
                        "corpus_documents": len(task.corpus or [])}
                    self.store.write_json("manifest.json", manifest)
                    for spec in specs:
                        for seed in cfg.seeds:
                            cell = cell_id(task.name, spec.label, model_name, seed)
                            if cell in done:
                                self.log(f"[dim]skip {cell} (already in {self.store.root})[/]")
                                continue
                            self._run_cell(cell, task, spec, strategies[spec.label], handle, model_name,
                                           seed, phases)
                del handle
                gc.collect()
        manifest["finished_at"] = _now()
        self.store.write_json("manifest.json", manifest)
        return self.store.root

    def _phases(self):
        from bench.progress import RichPhases

        return RichPhases(console=self.console)

    def _load_model(self, spec: str):
        from bench.models import load_model

        self.log(f"loading model {spec} ...")
        return load_model(spec, device=self.config.device, max_context=self.config.max_context,
                          trust_remote_code=self.config.trust_remote_code, log=self.log)

    def _load_task(self, name: str):
        from tasks import load_task

        task = load_task(name, seed=self.config.data_seed)
        if not task.test:
            raise BenchError(f"task {task.name!r} has an empty test split")
        return task

    def _run_cell(self, cell: str, task, spec, strategy, handle, model_name: str, seed: int, phases) -> None:
        from bench.resources import PeakMemory, Stopwatch
        from strategies.base import Budget

        cfg = self.config
        examples = task.test[: cfg.limit] if cfg.limit else list(task.test)
        budget = Budget(seed=seed, max_train_examples=cfg.train_limit, workdir=self.store.artifacts_dir(cell),
                        batch_size=cfg.batch_size, progress=phases.open)
        record: dict[str, Any] = {"cell": cell, "task": task.name, "strategy": spec.label, "model": model_name,
                                  "seed": seed, "metric": task.metric, "n": len(examples),
                                  "device": handle.device, "started_at": _now(), "error": None, "info": {}}
        self.log(f"[bold]{task.name}[/] x [bold]{spec.label}[/] x {model_name} (seed {seed}): "
                 f"{len(examples)} test examples")
        try:
            with PeakMemory() as mem_prepare, Stopwatch() as t_prepare:
                artifacts = strategy.prepare(task, handle, budget)
            with PeakMemory() as mem_predict, Stopwatch() as t_predict:
                with phases.open(f"{task.name}/{spec.label}: predict", len(examples)) as bar:
                    predictions = strategy.predict(artifacts, examples, progress=bar.advance)
            rows = score_rows(cell, task, spec.label, model_name, seed, examples, predictions)
            record.update(status="ok", prepare_s=t_prepare.seconds, predict_s=t_predict.seconds,
                          peak_memory_mb=max(mem_prepare.rss_mb, mem_predict.rss_mb),
                          peak_memory_prepare_mb=mem_prepare.rss_mb, peak_memory_predict_mb=mem_predict.rss_mb,
                          peak_gpu_memory_mb=max(filter(None, [mem_prepare.gpu_mb, mem_predict.gpu_mb]),
                                                 default=None),
                          info=dict(artifacts.info))
            self.store.append_rows(rows)
            mean = sum(r["score"] for r in rows) / len(rows)
            self.log(f"  {task.metric} {mean:.3f}, prepare {t_prepare.seconds:.1f}s, "
                     f"predict {t_predict.seconds:.1f}s")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one bad cell must not cost the others
            message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
            record.update(status="failed", error=message, traceback=traceback.format_exc(limit=8))
            self.log(f"[red]  failed: {message}[/]")
        finally:
            artifacts = None  # noqa: F841 (frees a LoRA copy of the model before the next cell)
            gc.collect()
        record["finished_at"] = _now()
        self.store.append_cell(record)


def run(config: RunConfig, console=None) -> Path:
    return Runner(config, console).run()

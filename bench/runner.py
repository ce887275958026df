"""Runs the grid: task x strategy x model x seed, one cell at a time.

Per cell: prepare (timed) -> predict on the first `limit` test examples (timed) ->
score each example -> append rows and a cell record to the run's store. A failing
cell is recorded with its error and the run goes on; cells already recorded as ok in
the run folder are skipped, so re-running the same config continues where it stopped.
The model is loaded once per model spec and shared by every strategy.

Nothing finished is computed twice (see `bench/cells.py`): predictions are
checkpointed per chunk, adapters and predictions come from the content-addressed
cache when their key matches, and an ok cell whose stored rows are damaged or missing
is run again for those rows only. Several processes may share one run folder: a cell
is claimed with a file lock, so each runs once. A full disk stops the run (finished
work stays valid); any other error fails only its cell.
"""
from __future__ import annotations

import datetime as _dt
import gc
import traceback
from pathlib import Path
from typing import Any

from bench.config import RunConfig
from bench.cost import PRICE_TABLE_VERSION
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
            "truncated": pred.truncated, "first_token_s": pred.first_token_s, "retrieval_s": pred.retrieval_s,
            "scoring": getattr(pred, "scoring", None)})
    return rows


class Runner:
    def __init__(self, config: RunConfig, console=None, log=None) -> None:
        self.config = config
        self.console = console
        from bench.redact import redact_text

        raw_log = log or (console.print if console else print)
        self.log = lambda text, *a, **k: raw_log(redact_text(str(text)), *a, **k)  # no secret reaches a log
        self.store = RunStore(config.run_dir)

    def _done_cells(self) -> set[str]:
        """Cells recorded ok whose rows are all stored and intact (a damaged row makes
        its cell run again, for the missing examples only)."""
        counts: dict[str, int] = {}
        for row in self.store.read_rows():
            counts[row.get("cell")] = counts.get(row.get("cell"), 0) + 1
        done = {c["cell"] for c in self.store.read_cells()
                if c.get("status") == "ok" and counts.get(c["cell"], 0) >= (c.get("n") or 0)}
        return done

    def _check_names(self) -> None:
        """Unknown model names and an impossible device fail before any data is read."""
        from bench.backends import check_specs
        from bench.models import resolve_device

        specs = self.config.model_specs()
        check_specs(specs)
        if any(spec.backend == "hf" for spec in specs):
            resolve_device(self.config.device)

    def _check_grid(self, specs, definitions) -> None:
        """A strategy that needs weights on a backend without them is a config error, before any load."""
        from bench.backends import check_grid

        needs = {spec.label: set(definitions[spec.label].needs) for spec in specs}
        check_grid(needs, self.config.model_specs())

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
        self._check_names()
        definitions = {spec.label: STRATEGIES.load(spec.name) for spec in specs}
        self._check_grid(specs, definitions)
        strategies = {spec.label: definitions[spec.label].build(dict(spec.options)) for spec in specs}
        earlier = self._earlier_manifest()
        manifest = build_manifest(cfg.to_dict(), {
            "damaged_lines": {}, "run": cfg.name, "models": dict(earlier.get("models", {})), "tasks": {},
            "artifacts": dict(earlier.get("artifacts", {})), "cost": dict(cfg.cost),
            "price_table_version": PRICE_TABLE_VERSION})
        self.store.write_json("manifest.json", manifest)
        done = self._done_cells()
        manifest["damaged_lines"] = dict(self.store.damaged)
        for name, bad in self.store.damaged.items():
            self.log(f"[yellow]{name}: {bad} damaged line(s) skipped; their work is computed again[/]")
        # Tasks first: a bad data file stops the run before a model is loaded.
        tasks = [self._load_task(name) for name in cfg.tasks]
        for task in tasks:
            manifest["tasks"][task.name] = {
                "fingerprint": task.fingerprint(), "source": task.source,
                "sizes": {s: len(task.split(s)) for s in ("train", "validation", "test")},
                "corpus_documents": len(task.corpus or []), "split_sha256": task.split_hashes()}
        self.store.write_json("manifest.json", manifest)
        with self._phases() as phases:
            for model_spec in cfg.model_specs():
                model_name = model_spec.label
                wanted = {cell_id(t.name, sp.label, model_name, sd) for t in tasks for sp in specs for sd in cfg.seeds}
                if wanted <= done:  # a finished run resumed: nothing needs the weights
                    self.log(f"[dim]every cell of {model_name} is already in {self.store.root}; model not loaded[/]")
                    continue
                handle = self._load_model(model_spec)
                manifest["models"][model_name] = {"backend": model_spec.backend, "spec": model_spec.to_dict(),
                                                  "fingerprint": handle.fingerprint, "device": handle.device,
                                                  **handle.extra}
                self.store.write_json("manifest.json", manifest)
                for task in tasks:
                    for spec in specs:
                        for seed in cfg.seeds:
                            cell = cell_id(task.name, spec.label, model_name, seed)
                            if cell in done:
                                self.log(f"[dim]skip {cell} (already in {self.store.root})[/]")
                                continue
                            with self.store.claim(cell) as mine:
                                if not mine:
                                    self.log(f"[dim]skip {cell} (another process is running it)[/]")
                                    continue
                                if cell in self._done_cells():  # finished by another process meanwhile
                                    continue
                                record = self._run_cell(cell, task, spec, strategies[spec.label], handle,
                                                        model_name, seed, phases, model_spec.backend)
                            hashes = {k: v for k, v in record.get("info", {}).items()
                                      if k.endswith("_sha256") and isinstance(v, str)}
                            if hashes:  # the index or adapter a cell used
                                manifest["artifacts"][cell] = hashes
                                self.store.write_json("manifest.json", manifest)
                from bench.backends import close_lm

                close_lm(handle)
                del handle
                gc.collect()
        manifest["finished_at"] = _now()
        self.store.write_json("manifest.json", manifest)
        return self.store.root

    def _earlier_manifest(self) -> dict:
        """What a continued run's manifest said of models and artifacts it may not load again."""
        import json

        path = self.store.root / "manifest.json"
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except (OSError, ValueError):
            return {}  # damaged: rebuilt from this run

    def _phases(self):
        from bench.progress import RichPhases

        return RichPhases(console=self.console)

    def _load_model(self, spec):
        from bench import backends

        return backends.load_lm(spec, device=self.config.device, max_context=self.config.max_context,
                                trust_remote_code=self.config.trust_remote_code, log=self.log,
                                run_dir=self.store.root)

    def _load_task(self, name: str):
        from tasks import load_task

        task = load_task(name, seed=self.config.data_seed)
        if len(task.test) < 2:  # one example gives a score without any spread: never a silent result
            raise BenchError(f"task {task.name!r} has {len(task.test)} test example(s); at least 2 are needed "
                             "for a score with an interval. Add examples or give a larger test file.")
        return task

    def _run_cell(self, cell: str, task, spec, strategy, handle, model_name: str, seed: int, phases,
                  backend: str = "hf") -> dict:
        from bench.cells import finish_cell, predict_rows, prepare_cell
        from bench.jsonl import DiskFullError
        from bench.latency import probe_cell, warm_up
        from bench.resources import EnergyMeter, PeakMemory, Stopwatch
        from strategies.base import Budget

        cfg = self.config
        examples = task.test[: cfg.limit] if cfg.limit else list(task.test)
        budget = Budget(seed=seed, max_train_examples=cfg.train_limit, workdir=self.store.artifacts_dir(cell),
                        batch_size=cfg.batch_size, progress=phases.open, cache=cfg.cache)
        record: dict[str, Any] = {"cell": cell, "task": task.name, "strategy": spec.label, "model": model_name,
                                  "backend": backend, "seed": seed, "metric": task.metric, "n": len(examples),
                                  "device": handle.device, "started_at": _now(), "error": None, "info": {}}
        self.log(f"[bold]{task.name}[/] x [bold]{spec.label}[/] x {model_name} (seed {seed}): "
                 f"{len(examples)} test examples")
        prep: dict[str, Any] = {}
        try:
            with PeakMemory() as mem_prepare, Stopwatch() as t_prepare:
                artifacts, prep = prepare_cell(self.store, cfg, cell, task, spec, strategy, handle, seed, budget)
            # Warm-up first, so the timed pass does not pay for first-call costs.
            warm_up(strategy, artifacts, examples, cfg.warmup)
            with PeakMemory() as mem_predict, Stopwatch() as t_predict, EnergyMeter(handle.device) as energy:
                with phases.open(f"{task.name}/{spec.label}: predict", len(examples)) as bar:
                    rows, pstats, digest = predict_rows(
                        self.store, cfg, cell, task, spec, strategy, artifacts, handle, seed, examples,
                        lambda exs, preds: score_rows(cell, task, spec.label, model_name, seed, exs, preds),
                        progress=bar.advance)
            record["energy_j"] = energy.joules
            # Last: a latency variant may change the artifacts in place (a merged adapter).
            record["latency"] = probe_cell(strategy, artifacts, examples, cfg.latency_sample, cfg.warmup,
                                           phases.open, f"{task.name}/{spec.label}")
            # Cached work reports the seconds it took when computed, never the hit's.
            record.update(prepare_cached=prep["prepare_cached"], resumed_n=pstats.resumed_n,
                          cached_n=pstats.cached_n, computed_n=pstats.computed_n,
                          truncated_n=sum(bool(r.get("truncated")) for r in rows), pred_digest=digest,
                          predict_oom_retries=pstats.oom_retries, predict_batch_size_used=pstats.batch_size_used,
                          notes=pstats.notes,
                          scoring="/".join(sorted({str(r.get("scoring")) for r in rows if r.get("scoring")})) or None)
            record.update(status="ok", prepare_s=prep["prepare_s"], predict_s=pstats.predict_s,
                          peak_memory_mb=max(mem_prepare.rss_mb, mem_predict.rss_mb),
                          peak_memory_prepare_mb=mem_prepare.rss_mb, peak_memory_predict_mb=mem_predict.rss_mb,
                          peak_gpu_memory_mb=max(filter(None, [mem_prepare.gpu_mb, mem_predict.gpu_mb]),
                                                 default=None),
                          info=dict(artifacts.info))
            self.store.append_rows(rows)
            mean = sum(r["score"] for r in rows) / len(rows)
            if pstats.resumed_n or pstats.cached_n or prep["prepare_cached"]:
                self.log(f"  reused: {pstats.resumed_n} checkpointed, {pstats.cached_n} cached rows"
                         f"{', cached adapter' if prep['prepare_cached'] else ''}")
            self.log(f"  {task.metric} {mean:.3f}, prepare {prep['prepare_s']:.1f}s, "
                     f"predict {pstats.predict_s:.1f}s")
        except (KeyboardInterrupt, DiskFullError):
            raise  # a full disk fails every later write too: stop, keeping what is stored
        except Exception as exc:  # one bad cell must not cost the others
            if prep.get("saved"):
                from bench import prepared

                prepared.evict(prep["prepare_key"])  # a failed cell caches nothing
            message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
            record.update(status="failed", error=message, traceback=traceback.format_exc(limit=8))
            self.log(f"[red]  failed: {message}[/]")
        finally:
            artifacts = None  # noqa: F841 (frees a LoRA copy of the model before the next cell)
            gc.collect()
        record["finished_at"] = _now()
        from bench.redact import redact

        self.store.append_cell(redact(record))  # an error message may echo a token
        if record["status"] == "ok":
            finish_cell(self.store, cfg, cell, rows, digest)
        return record


def run(config: RunConfig, console=None) -> Path:
    return Runner(config, console).run()

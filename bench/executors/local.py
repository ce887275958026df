"""The local executor: every cell in this process, one after another, model by model.

The model is loaded once per model entry and only if one of its cells is left to run.
Cells of one task x model form a latency group: when `bench.latency.probe_group`
exists, the group's cells are all prepared and predicted first, then their batch-1
probes run round-robin on the same queries, and only then are they recorded (their
artifacts stay alive until probed). Meanwhile the run folder holds each cell's
checkpoint, through the sink: its rows per chunk and its prepared artifacts as soon
as `prepare` returns (bench/checkpoint.py), so a run killed mid group resumes with
those cells only probed, never prepared or predicted again. Without the group hook,
each cell is probed right after its own predictions.
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Any

from bench.execute import Started, Worker, complete, probe_cells, start


class LocalExecutor:
    name = "local"

    def __init__(self, config) -> None:
        self.config = config

    def facts(self) -> dict[str, Any]:
        import platform

        return {"name": self.name, "nodes": [{"host": platform.node()}]}

    def run(self, cells: list, sink, context) -> None:
        from bench import latency

        log = context.log
        worker = Worker(context.config, log, context.open_bar, workdir=sink.artifacts_dir, tasks=context.tasks,
                        run_dir=sink.root)
        grouped = getattr(latency, "probe_group", None) is not None
        done = sink.done_cells()
        sink.update_manifest({"executor": self.facts()})
        for model, specs in itertools.groupby(cells, key=lambda s: s.model_label):
            specs = list(specs)
            if all(s.cell in done for s in specs):  # a finished run resumed: nothing needs the weights
                log(f"[dim]every cell of {model} is already in {sink.root}; model not loaded[/]")
                continue
            handle = worker.model(specs[0].model)
            entry = specs[0].model
            sink.update_manifest({"models": {model: {"backend": entry.get("backend", "hf"), "spec": entry,
                                                     "fingerprint": handle.fingerprint, "device": handle.device,
                                                     **handle.extra}}})
            key = (lambda s: s.task.entry) if grouped else (lambda s: s.cell)
            for _, group in itertools.groupby(specs, key=key):
                self._run_group(list(group), worker, sink, done, log)
            worker.release_model()

    def _run_group(self, group: list, worker: Worker, sink, done: set, log) -> None:
        with contextlib.ExitStack() as claims:
            started = []
            for spec in group:
                if spec.cell in done:
                    log(f"[dim]skip {spec.cell} (already in {sink.root})[/]")
                    continue
                if not claims.enter_context(sink.claim(spec.cell)):
                    log(f"[dim]skip {spec.cell} (another process is running it)[/]")
                    continue
                if spec.cell in sink.done_cells():  # finished by another process meanwhile
                    continue
                begun = start(spec, worker, sink, sink.checkpoint(spec.cell))
                started.append((spec, begun))
            probed = iter(probe_cells([b for _, b in started if isinstance(b, Started)], worker))
            for spec, begun in started:
                item = next(probed) if isinstance(begun, Started) else begun
                result = complete(item, worker)
                result.record["executor"] = self.name
                sink.record(result, spec)

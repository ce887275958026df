"""Runs the grid: plan the cells, hand them to an executor, let the sink record them.

`Runner.run` checks names before anything heavy loads, loads the tasks (a bad data
file stops the run before a model is loaded), plans the grid (`bench.grid.plan`),
opens the manifest (merged with what other processes wrote to the folder), and
gives the cells to the configured executor (`local`, or `ray`); the `ResultSink` is
the only writer of the run folder. A failing cell is recorded with its error and
the run goes on; cells already recorded as ok are skipped, so re-running the same
config (or `--resume`, on either executor) continues where it stopped: an
unfinished cell's checkpoint (its rows and prepared artifacts, bench/checkpoint.py)
is taken up, not computed again.

When the executors return, `unfinished` lists this grid's cells without a record
(for example skipped because another process is running them): the run folder is
then not stamped finished and the CLI exits non-zero.
"""
from __future__ import annotations

from pathlib import Path

from bench.config import RunConfig
from bench.cost import PRICE_TABLE_VERSION
from bench.execute import recall_at_k, score_rows  # noqa: F401 (their historical home)
from bench.sink import ResultSink

def task_facts(task) -> dict:
    """What the manifest records of a task: enough to tell whether its data changed, and
    the train answer frequencies the reports' trivial baselines need."""
    from bench.metrics import train_answer_facts

    return {"fingerprint": task.fingerprint(), "source": task.source,
            "sizes": {s: len(task.split(s)) for s in ("train", "validation", "test")},
            "corpus_documents": len(task.corpus or []), "split_sha256": task.split_hashes(),
            **train_answer_facts(task)}


class Runner:
    def __init__(self, config: RunConfig, console=None, log=None) -> None:
        self.config = config
        self.console = console
        from bench.redact import redact_text

        raw_log = log or (console.print if console else print)
        self.log = lambda text, *a, **k: raw_log(redact_text(str(text)), *a, **k)  # no secret reaches a log
        self.sink = ResultSink(config.run_dir, self.log)
        self.store = self.sink.store
        self.unfinished: list[str] = []

    def _check_names(self) -> None:
        """Unknown strategies, tasks, model names, an impossible device and a strategy
        that needs weights on a backend without them fail before any data is read."""
        from bench.backends import check_grid, check_specs
        from bench.models import resolve_device
        from strategies import STRATEGIES
        from tasks import TASKS

        strategies = self.config.strategy_specs()
        for spec in strategies:
            STRATEGIES.check(spec.name)
        for name in self.config.tasks:
            if not name.endswith((".yaml", ".yml")):
                TASKS.check(name)
        models = self.config.model_specs()
        check_specs(models)
        # A Ray cluster's nodes choose their own device.
        if self.config.executor == "local" and any(spec.backend == "hf" for spec in models):
            resolve_device(self.config.device)
        needs = {spec.label: set(STRATEGIES.load(spec.name).needs) for spec in strategies}
        check_grid(needs, models)

    def run(self) -> Path:
        import tasks as tasks_pkg
        from bench.executors import EXECUTORS, RunContext, make_executor
        from bench.grid import plan
        from bench.manifest import build_manifest

        cfg = self.config
        EXECUTORS.check(cfg.executor)
        self._check_names()
        self.sink.done_cells()  # reads the folder: counts damaged lines
        damaged = dict(self.store.damaged)
        for name, bad in damaged.items():
            lines = self.store.damaged_lines.get(str(self.store.root / name), [])
            where = f" (line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:20]))})" if lines else ""
            self.log(f"[yellow]{self.store.root / name}: {bad} damaged line(s){where} skipped; their work is "
                     "computed again[/]")
        loaded = [(entry, tasks_pkg.load_task(entry, seed=cfg.data_seed)) for entry in cfg.tasks]
        for _, task in loaded:
            if len(task.test) < 2:  # one example gives a score without any spread: never a silent result
                from bench.errors import BenchError

                raise BenchError(f"task {task.name!r} has {len(task.test)} test example(s); at least 2 are "
                                 "needed for a score with an interval. Add examples or give a larger test file.")
        from bench.updates import check_tasks

        check_tasks(cfg.corpus_change, [task.name for _, task in loaded])  # spec files' names are known now
        cells = plan(cfg, {entry: task.name for entry, task in loaded})
        executor = make_executor(cfg)
        manifest = build_manifest(cfg.to_dict(), {
            "damaged_lines": damaged, "run": cfg.name, "cost": dict(cfg.cost),
            "price_table_version": PRICE_TABLE_VERSION,
            "tasks": {task.name: task_facts(task) for _, task in loaded}})
        self.sink.open_manifest(manifest, [c.cell for c in cells])
        with self._phases() as phases:
            executor.run(cells, self.sink, RunContext(cfg, self.log, phases.open, loaded))
        self.unfinished = self.sink.finish([c.cell for c in cells])
        if not self.unfinished and self.sink.read_manifest().get("finished_at"):
            from bench.history import record_finished

            record_finished(cfg.history, self.store.root, self.log)  # the results database, once per finished run
        for cell in self.unfinished:
            self.log(f"[yellow]unfinished: {cell} (another process holds it, or its worker was lost)[/]")
        return self.store.root

    def _phases(self):
        from bench.progress import RichPhases

        return RichPhases(console=self.console)


def run(config: RunConfig, console=None) -> Path:
    return Runner(config, console).run()

"""Executors: who runs the cells of a planned grid. One protocol, two implementations.

Rules every executor follows:
- it runs `bench.execute` on `CellSpec`s and hands every event, checkpoint chunk and
  `CellResult` to the `ResultSink`; it never writes the run folder itself;
- it skips cells the folder already holds as finished, and claims each cell it runs
  (`sink.claim`), so several drivers on one folder run each cell once;
- cells of one model share a loaded model (one load per process or actor);
- it returns when every cell it could claim has a record; a cell it could not claim
  stays unfinished, and the runner says so.
`local` runs cells in this process, one after another (today's loop); `ray` runs
them on Ray actors, locally or on a cluster (`bench/executors/ray.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from bench.registry import Registry

EXECUTORS = Registry("executor", {
    "local": "bench.executors.local:LocalExecutor",
    "ray": "bench.executors.ray:RayExecutor",
})


@dataclass
class RunContext:
    """What the runner hands an executor besides the cells and the sink."""

    config: Any  # RunConfig
    log: Callable[..., None]
    open_bar: Any = None  # bench.progress phase factory, or None
    tasks: list = field(default_factory=list)  # (entry, Task) already loaded by the driver


class Executor(Protocol):
    name: str

    def facts(self) -> dict[str, Any]:
        """What the manifest says of it (for Ray: version, nodes, resources)."""
        ...

    def run(self, cells: list, sink, context: RunContext) -> None: ...


def make_executor(config) -> Executor:
    name = getattr(config, "executor", "local") or "local"
    return EXECUTORS.load(name)(config)

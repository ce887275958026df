"""The Ray executor: cells on Ray actors, on this machine or on a cluster.

- One pool of actors per model entry; an actor loads its model once and runs cell
  after cell of that model (`bench.execute` inside the actor, as in `local`). An
  actor reserves the largest resources its cells ask for (`CellSpec.resources`:
  `num_gpus` only where the cluster has GPUs), so the pool size follows what fits.
- `run_cell` is a Ray generator: each checkpoint chunk's rows, the prepared
  artifacts (right after `prepare`) and each event stream to the driver as they
  happen, and the sink writes them, so a worker that dies loses at most the chunk it
  was computing, and a resumed cell is neither prepared nor predicted again (the
  worker gets the cell's `Checkpoint`; it loads the artifacts from the driver's run
  folder where it can read it, else prepares again). A cell whose worker died is retried on a fresh
  actor (resuming from the stored chunks) up to `max_retries` times, then recorded
  failed with the reason. An error inside a cell is an ordinary failed cell (no retry).
- Artifacts come back as bytes into RUN/artifacts/<cell>/ (or stay on `artifacts_path`,
  a folder every node and the driver share). Caches (adapters, predictions, indexes)
  are each node's own, under its ADAPTBENCH_CACHE.
- Ctrl-C kills the actors and re-raises: the folder keeps every chunk received, and
  `bench run --resume RUN` (on either executor) continues it.

Ray pitfalls handled here: a cluster this process starts gets an explicit
`object_store_memory` and no dashboard; connecting or starting has a timeout with a
clear error; from Ray 2.59 a local cluster uses token authentication by default (a
token under ~/.ray), so a driver joining a cluster started elsewhere needs that
cluster's token in RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH). `local_mode` no longer
exists: tests start a real local cluster.
"""
from __future__ import annotations

import collections
import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError
from bench.options import config_from


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a cluster in this process; "auto" or HOST:PORT: join one
    num_cpus: int | None = None  # a cluster started here: its CPUs (default: all)
    num_gpus: int | None = None
    object_store_memory: int = 256 * 2**20  # a cluster started here; Ray's default takes 30% of RAM
    workers: int | None = None  # actors per model (default: as many as the cluster fits)
    max_retries: int = 2  # times a cell whose worker died runs again
    start_timeout_s: float = 90.0
    artifacts_path: str | None = None  # a folder shared by every node and the driver
    log_to_driver: bool = False

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus", "workers"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise BenchError(f"config.ray.{name}: expected an integer >= 0, got {value!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise BenchError(f"config.ray.max_retries: expected an integer >= 0, got {self.max_retries!r}")
        if not isinstance(self.object_store_memory, int) or self.object_store_memory < 78 * 2**20:
            raise BenchError("config.ray.object_store_memory: expected bytes, at least 78 MiB (Ray's minimum)")


def ray_module():
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs Ray: pip install 'adaptbench[ray]' (or 'ray==2.60.*')") from None
    return ray


def connect(options: RayOptions) -> bool:
    """Start or join a cluster; True when this call started the connection."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": options.log_to_driver,
                              "namespace": "adaptbench", "configure_logging": False}
    if options.address:
        kwargs["address"] = options.address
    else:  # "local": a new cluster, even where an earlier `ray start` left its address file
        kwargs.update(address="local", num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                      object_store_memory=options.object_store_memory)
    where = f"the Ray cluster at {options.address}" if options.address else "a local Ray cluster"
    try:
        with _deadline(options.start_timeout_s):
            ray.init(**kwargs)
    except _TimedOut:
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise BenchError(f"could not reach {where} within {options.start_timeout_s:.0f} s "
                         "(config ray.start_timeout_s). Check `ray status`, the address and the firewall.") from None
    except Exception as error:  # noqa: BLE001 (Ray raises many kinds; the user gets one clear line)
        text = f"{type(error).__name__}: {error}"
        hint = (" The cluster uses token authentication: set RAY_AUTH_TOKEN (see `ray get-auth-token` on its "
                "head node) or RAY_AUTH_TOKEN_PATH." if "auth" in text.lower() or "token" in text.lower() else
                " Is a cluster running there (`ray start --head`)?" if options.address else "")
        raise BenchError(f"could not start or join {where}: {text[:400]}.{hint}") from None
    return True


class _TimedOut(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float):
    """SIGALRM after `seconds` (main thread only). Not a thread: Ray's processes die
    with the thread that started them (PR_SET_PDEATHSIG), so ray.init stays on this one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise _TimedOut()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, float(seconds)))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def cluster_facts() -> dict[str, Any]:
    ray = ray_module()
    nodes = [{"node_id": n.get("NodeID"), "host": n.get("NodeManagerHostname"),
              "address": n.get("NodeManagerAddress"), "alive": n.get("Alive"),
              "resources": {k: v for k, v in (n.get("Resources") or {}).items() if not k.startswith("node:")}}
             for n in ray.nodes()]
    resources = {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
    return {"name": "ray", "ray_version": ray.__version__, "nodes": nodes, "resources": resources}


class RayExecutor:
    name = "ray"

    def __init__(self, config) -> None:
        self.config = config
        self.options = config_from(RayOptions, dict(getattr(config, "ray", {}) or {}), "config.ray")

    def facts(self) -> dict[str, Any]:
        return cluster_facts()

    def run(self, cells: list, sink, context) -> None:
        done = sink.done_cells()
        todo = [c for c in cells if c.cell not in done]
        for spec in cells:
            if spec.cell in done:
                context.log(f"[dim]skip {spec.cell} (already in {sink.root})[/]")
        if not todo:
            context.log(f"[dim]every cell is already in {sink.root}; no Ray cluster started[/]")
            return
        started = connect(self.options)
        try:
            facts = self.facts()
            sink.update_manifest({"executor": facts, "executors": {"ray": facts}})
            context.log(f"Ray {facts['ray_version']}: {len(facts['nodes'])} node(s), {facts['resources']}")
            by_model: dict[str, list] = collections.OrderedDict()
            for spec in todo:
                by_model.setdefault(spec.model_label, []).append(spec)
            for model, specs in by_model.items():
                _Pool(self, model, specs, sink, context).run()
        finally:
            if started:
                ray_module().shutdown()


class _Pool:
    """The actors of one model and the cells they run."""

    def __init__(self, executor: RayExecutor, model: str, specs: list, sink, context) -> None:
        self.executor, self.model, self.specs, self.sink, self.context = executor, model, specs, sink, context
        self.options = executor.options
        self.log = context.log
        ray = ray_module()
        gpus_here = ray.cluster_resources().get("GPU", 0) > 0 and str(executor.config.device) != "cpu"
        self.num_cpus = max(float(s.resources.get("num_cpus", 1)) for s in specs)
        self.num_gpus = max(float(s.resources.get("num_gpus", 0)) for s in specs) if gpus_here else 0.0
        memory = [float(s.resources["memory"]) for s in specs if s.resources.get("memory")]
        self.memory = max(memory) if memory else None

    def _size(self) -> int:
        if self.options.workers:
            return max(1, min(self.options.workers, len(self.specs)))
        total = ray_module().cluster_resources()
        fits = int(total.get("CPU", 1) // max(self.num_cpus, 1e-9))
        if self.num_gpus:
            fits = min(fits, int(total.get("GPU", 0) // self.num_gpus))
        return max(1, min(fits, len(self.specs)))

    def _actor(self):
        from bench.executors.ray_worker import CellActor

        ray = ray_module()
        remote = ray.remote(CellActor).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                               memory=self.memory, max_restarts=0)
        cfg = self.executor.config
        return remote.remote(cfg.to_dict(), self.options.artifacts_path, cfg.name)

    def run(self) -> None:
        ray = ray_module()
        pending = collections.deque((spec, 0) for spec in self.specs)
        idle = [self._actor() for _ in range(self._size())]
        inflight: dict[Any, tuple] = {}
        self.log(f"{self.model}: {len(self.specs)} cell(s) on {len(idle)} Ray actor(s)")
        with contextlib.ExitStack() as stack:
            try:
                while pending or inflight:
                    while idle and pending:
                        spec, attempt = pending.popleft()
                        claim = stack.enter_context(_Claim(self.sink, spec.cell))
                        if not claim.mine:
                            self.log(f"[dim]skip {spec.cell} (another process is running it)[/]")
                            claim.release()
                            continue
                        if spec.cell in self.sink.done_cells():
                            claim.release()
                            continue
                        actor = idle.pop()
                        gen = actor.run_cell.remote(spec.to_dict(), self.sink.checkpoint(spec.cell))
                        inflight[gen] = (actor, spec, attempt, claim)
                    if not inflight:
                        continue
                    ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
                    for gen in ready:
                        self._step(gen, inflight, idle, pending)
            except BaseException:
                for actor, *_ in inflight.values():
                    with contextlib.suppress(Exception):
                        ray.kill(actor)
                raise
            finally:
                for actor in idle:
                    with contextlib.suppress(Exception):
                        ray.kill(actor)

    def _step(self, gen, inflight: dict, idle: list, pending) -> None:
        ray = ray_module()
        actor, spec, attempt, claim = inflight[gen]
        try:
            message = ray.get(next(gen))
        except StopIteration:
            message = ("lost", "the worker's stream ended without a result")
        except ray.exceptions.RayError as exc:
            message = ("lost", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        kind = message[0]
        if kind == "event":
            self.sink.event(message[1], **message[2])
        elif kind == "chunk":
            self.sink.chunk(spec.cell, message[1])
        elif kind == "prepared":
            self.sink.prepared(spec.cell, message[1], folder=message[3], files=message[2])
        elif kind == "done":
            del inflight[gen]
            result = message[1]
            result.record.update(executor="ray", attempts=attempt + 1)
            self.sink.record(result, spec)
            self._report(result)
            claim.release()
            idle.append(actor)
        else:  # the worker died (or its stream broke): a fresh actor, and the cell again or failed
            del inflight[gen]
            with contextlib.suppress(Exception):
                ray.kill(actor)
            idle.append(self._actor())
            reason = message[1]
            if attempt < self.options.max_retries:
                self.log(f"[yellow]{spec.cell}: worker lost ({reason}); retry {attempt + 1} of "
                         f"{self.options.max_retries}[/]")
                claim.release()
                pending.appendleft((spec, attempt + 1))
            else:
                self.sink.record(_lost(spec, attempt + 1, reason), spec)
                self.log(f"[red]{spec.cell}: failed, its worker was lost {attempt + 1} time(s): {reason}[/]")
                claim.release()

    def _report(self, result) -> None:
        rec = result.record
        if result.ok:
            mean = sum(r["score"] for r in result.rows) / max(1, len(result.rows))
            node = (rec.get("hardware") or {}).get("node")
            self.log(f"  {rec['cell']}: {rec.get('metric')} {mean:.3f} on {node} "
                     f"(prepare {rec.get('prepare_s', 0):.1f}s, predict {rec.get('predict_s', 0):.1f}s)")
        else:
            self.log(f"[red]  {rec['cell']}: failed: {rec.get('error')}[/]")


class _Claim:
    """A cell's claim lock, held by the driver while a worker runs the cell."""

    def __init__(self, sink, cell: str) -> None:
        self._cm = sink.claim(cell)
        self.mine = False
        self._open = False

    def __enter__(self) -> "_Claim":
        self.mine = self._cm.__enter__()
        self._open = True
        return self

    def release(self) -> None:
        if self._open:
            self._open = False
            self._cm.__exit__(None, None, None)

    def __exit__(self, *exc) -> None:
        self.release()


def _lost(spec, attempts: int, reason: str):
    from bench.execute import CellResult, now

    record = {"cell": spec.cell, "task": spec.task.name, "strategy": spec.strategy.label, "model": spec.model_label,
              "seed": spec.seed, "status": "failed", "executor": "ray", "attempts": attempts, "info": {},
              "error": f"its Ray worker died {attempts} time(s) (max_retries {attempts - 1}): {reason}",
              "started_at": None, "finished_at": now()}
    return CellResult(spec.cell, record)


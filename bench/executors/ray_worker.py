"""The body of a Ray actor: one `bench.execute.Worker` (its model loaded once) that
runs cells and streams what they produce back to the driver.

`run_cell` is a generator, so Ray streams each yielded message as it happens:
("event", name, fields), ("prepared", ref, files, folder) after `prepare` (the
artifacts' bytes, or their folder on the shared path), ("chunk", rows) after each
checkpoint chunk, and last ("done", CellResult). The cell itself runs on a thread of the actor, because
`execute` reports through callbacks; the generator relays them in order.
"""
from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

# Files of a cell's folder that belong to the driver's bookkeeping, never shipped.
_NOT_ARTIFACTS = {"partial.jsonl", "prepared.jsonl", ".lock"}


class _QueueChannel:
    def __init__(self, q: "queue.Queue", shared: bool = False) -> None:
        self.q, self.shared = q, shared
        self.sent: set[str] = set()  # folders already shipped with a "prepared" message

    def prepared(self, cell: str, ref: dict, folder) -> None:
        if folder is None or self.shared:
            self.q.put(("prepared", ref, None, None if folder is None else str(folder)))
            return
        folder = Path(folder)
        self.sent.add(str(folder))
        self.q.put(("prepared", ref, {str(p.relative_to(folder)): p.read_bytes()
                                      for p in sorted(folder.rglob("*")) if p.is_file()}, None))

    def event(self, name: str, **fields: Any) -> None:
        self.q.put(("event", name, {**fields, "pid": os.getpid()}))

    def chunk(self, cell: str, rows: list[dict]) -> None:
        self.q.put(("chunk", rows))


class CellActor:
    def __init__(self, config: dict, artifacts_path: str | None, run_name: str) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from bench.config import RunConfig
        from bench.execute import Worker
        from bench.options import config_from
        from bench.store import safe_name

        self.config = config_from(RunConfig, config, "the run config sent to a Ray worker")
        self.shared = artifacts_path is not None
        base = Path(artifacts_path) if artifacts_path else Path(tempfile.mkdtemp(prefix="adaptbench-"))
        self.base = base / safe_name(run_name) if artifacts_path else base
        self.worker = Worker(self.config, workdir=self._workdir, node=self._node())

    @staticmethod
    def _node() -> str:
        try:
            import ray

            return f"{socket.gethostname()} ({ray.get_runtime_context().get_node_id()[:12]})"
        except Exception:  # noqa: BLE001
            return socket.gethostname()

    def _workdir(self, cell: str) -> Path:
        from bench.store import safe_name

        path = self.base / safe_name(cell)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def pid(self) -> int:
        return os.getpid()

    def run_cell(self, spec: dict, checkpoint) -> Iterator[tuple]:
        from bench.execute import execute
        from bench.grid import CellSpec

        cell = CellSpec.from_dict(spec)
        q: queue.Queue = queue.Queue()
        channel = _QueueChannel(q, self.shared)

        def body() -> None:
            try:
                q.put(("done", execute(cell, self.worker, channel, checkpoint)))
            except BaseException as exc:  # noqa: BLE001 (a full disk, an interrupt: the driver decides)
                q.put(("lost", f"{type(exc).__name__}: {exc}"))

        threading.Thread(target=body, daemon=True).start()
        while True:
            message = q.get()
            if message[0] == "done":
                self._pack(message[1], channel.sent)
            yield message
            if message[0] in ("done", "lost"):
                return

    def _pack(self, result, sent: set[str] = frozenset()) -> None:
        """Artifacts travel with the result unless they lie on the shared path (or went
        already, as the prepare checkpoint: `sent`)."""
        folder = Path(result.artifact_dir) if result.artifact_dir else None
        if folder is None or not folder.is_dir():
            return
        if self.shared:
            result.in_place = True
            return
        result.files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
                        if p.is_file() and p.name not in _NOT_ARTIFACTS
                        and not any(str(p).startswith(f"{gone}{os.sep}") for gone in sent)}
        shutil.rmtree(folder, ignore_errors=True)

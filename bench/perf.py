"""`bench perf`: each optimised path against its plain baseline, in one process and one run.

The machine is shared and absolute times drift, so every case measures its baseline
and its optimised path back to back on the same inputs and reports a ratio (or a
share) against a goal, plus whether the two paths agree (same greedy text, same loss,
same rows). Cases live in `bench/perf_cases.py` (CPU) and `bench/perf_gpu.py`
(the GPU training comparison); this module holds the result type, the probe that
times the hot calls, and the table, `perf.json` and `perf.md` writers.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator


@dataclass
class CaseResult:
    case: str
    measure: str  # what `value` is, e.g. "throughput ratio"
    value: float | None
    goal: str  # ">= 3x", "<= 10%"
    passed: bool | None  # None: not measured (skipped)
    agree: str = ""  # how the outputs of the two paths compare
    baseline: str = ""  # the plain path's number, with its unit
    optimised: str = ""
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    fmt: str | None = None  # "%", "x" or "f"; by default the goal's unit

    def shown_value(self) -> str:
        if self.value is None:
            return "n/a"
        fmt = self.fmt or ("%" if self.goal.endswith("%") else "x" if self.goal.endswith("x") else "f")
        return {"%": f"{self.value:.1%}", "x": f"{self.value:.2f}x"}.get(fmt, f"{self.value:.3f}")


def at_least(value: float, goal: float) -> bool:
    return value >= goal


def ratio_result(case: str, baseline_s: float, optimised_s: float, goal: float, **kw: Any) -> CaseResult:
    """Same work timed twice: the speed-up is the baseline's time over the optimised one's."""
    ratio = baseline_s / optimised_s if optimised_s > 0 else float("inf")
    kw.setdefault("baseline", f"{baseline_s:.2f} s")
    kw.setdefault("optimised", f"{optimised_s:.2f} s")
    agreed = kw.get("details", {}).get("agreed", True)
    return CaseResult(case, "speed-up", ratio, f">= {goal:g}x", ratio >= goal and agreed, **kw)


class Probe:
    """Wall time of chosen calls, by bucket. Wraps methods in place (restored on exit);
    a call inside another probed call counts once, for the outermost bucket, so the
    forward passes inside `generate` are not counted twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._depth = 0
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, bucket: str) -> None:
        original = getattr(owner, name, None)
        if original is None or getattr(original, "_perf_probe", None) is self:
            return
        own = name in vars(owner)  # inherited: delete the wrapper afterwards, do not pin it
        probe = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if probe._depth:
                return original(*args, **kwargs)
            probe._depth += 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                probe._depth -= 1
                probe.seconds[bucket] = probe.seconds.get(bucket, 0.0) + time.perf_counter() - t0
                probe.calls[bucket] = probe.calls.get(bucket, 0) + 1

        timed._perf_probe = self  # type: ignore[attr-defined]
        timed.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original) if own else delattr(owner, name))

    def total(self) -> float:
        return sum(self.seconds.values())

    def __enter__(self) -> "Probe":
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._undo:
            self._undo.pop()()


def probe_hot_paths(probe: Probe, model_class: type) -> None:
    """The calls `bench perf` counts as real work: model forward and generate, the
    backward pass and optimizer step of training, query/corpus embedding and search."""
    import faiss
    import torch
    from transformers.generation.utils import GenerationMixin

    from bench.embedder import Embedder

    probe.wrap(GenerationMixin, "generate", "generate")
    probe.wrap(model_class, "forward", "forward")
    probe.wrap(torch.Tensor, "backward", "training")
    probe.wrap(torch.optim.AdamW, "step", "training")
    probe.wrap(Embedder, "encode", "retrieval")
    for cls in (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexHNSWFlat, faiss.IndexIVFFlat):
        probe.wrap(cls, "search", "retrieval")


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    box = [0.0]
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - t0


def environment() -> dict[str, Any]:
    import torch

    from bench.resources import pin_allocator

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average": [round(x, 2) for x in load] if load else None, "malloc": pin_allocator(),
            "at": time.strftime("%Y-%m-%d %H:%M:%S")}


# -- output -------------------------------------------------------------------
COLUMNS = ("case", "baseline", "optimised", "value", "goal", "agree", "pass")


def _cells(r: CaseResult) -> list[str]:
    verdict = ("info" if r.value is not None else "skip") if r.passed is None else ("PASS" if r.passed else "FAIL")
    return [r.case, r.baseline, r.optimised, f"{r.shown_value()} {r.measure}", r.goal, r.agree, verdict]


def render_table(results: list[CaseResult], title: str = "bench perf", console: Any = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for r in results:
        row = _cells(r)
        style = {"PASS": "green", "FAIL": "red"}.get(row[-1], "dim")
        table.add_row(*map(escape, row[:-1]), f"[{style}]{row[-1]}[/]")
    console = console or Console()
    console.print(table)
    for r in results:
        if r.note:
            console.print(f"[dim]{escape(r.case)}: {escape(r.note)}[/]")


def to_markdown(results: list[CaseResult], env: dict[str, Any]) -> str:
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"# bench perf ({env.get('at')}, {env.get('cpus')} CPUs, torch {env.get('torch')}, "
             f"load average {env.get('load_average')})", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(esc(c) for c in _cells(r)) + " |" for r in results]
    lines += [""] + [f"- **{esc(r.case)}**: {esc(r.note)}" for r in results if r.note]
    return "\n".join(lines) + "\n"


def write_results(results: list[CaseResult], out: str | Path, env: dict[str, Any]) -> Path:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"environment": env, "cases": [asdict(r) for r in results]}
    (folder / "perf.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    (folder / "perf.md").write_text(to_markdown(results, env), encoding="utf-8")
    return folder

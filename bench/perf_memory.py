"""The memory case of `bench perf`: twelve adapter cells in a row on the loaded model.

Each cell attaches its adapter to the shared model (bench/backends/shared_adapters.py),
trains a step, answers a few test prompts and is dropped and released the way the
executor releases a cell (`bench.resources.release_memory`: collect, then hand the
allocator's freed heap back). The measure is process RSS (psutil), sampled during every
cell: RSS is what the machine (and an OOM killer) sees, copies of the weights included.

The question is whether memory grows with the grid, so the verdict compares each
method's later cells with that method's first cell (LoRA, DoRA and IA3 differ in working
set: DoRA builds a dense weight per adapted layer for its norms) and RSS after each
release with RSS after the first; the overall figure (largest peak of cells 2-12 against
cell 1, a LoRA cell) is printed beside it. One cell over a private deep copy (the path
every adapter cell took before) gives the peak that copy costs.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.perf import CaseResult

GROWTH_GOAL = 0.10
CELLS = 12
METHODS = ("lora", "dora", "ia3")


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _cell(name: str, handle: Any, task: Any, n: int, copy_base: bool = False) -> float:
    """One adapter cell (prepare, predict, drop, release); its peak RSS in MB."""
    from bench.resources import PeakMemory, release_memory
    from strategies import STRATEGIES, training
    from strategies.base import Budget

    strategy = STRATEGIES.load(name).build({"max_steps": 1, "batch_size": 2, "max_length": 128,
                                            "max_val_examples": 0, "forgetting": False, "max_train_examples": 2})
    if copy_base:  # the old path: a deep copy of the base per cell, PEFT over it
        def wrap(base, cfg, task, lm):
            from peft import get_peft_model

            from strategies.lora import lora_config

            with training.quiet_peft():
                return get_peft_model(base, lora_config(cfg))
        strategy.method = training.Method(name, wrap, training.peft_model_reload, training.peft_save,
                                          training.peft_state, copy_base=lambda lm: copy.deepcopy(lm.torch_model))
    with PeakMemory() as peak:
        art = strategy.prepare(task, handle, Budget(seed=0))
        strategy.predict(art, list(task.test[:n]))
        del art, strategy
        release_memory()  # as the executor releases a cell
    return peak.rss_mb


def growth(peaks: list[float], methods: list[str]) -> dict[str, Any]:
    """Per method: its first cell's peak, the largest of its later cells' and the growth
    between them; overall: the largest peak of cells 2.. against cell 1's."""
    per: dict[str, dict[str, float]] = {}
    for m in dict.fromkeys(methods):
        mine = [p for p, k in zip(peaks, methods) if k == m]
        later = max(mine[1:]) if len(mine) > 1 else None
        per[m] = {"first_mb": mine[0], "later_max_mb": later,
                  "growth": (later - mine[0]) / mine[0] if later is not None else None}
    overall = (max(peaks[1:]) - peaks[0]) / peaks[0] if len(peaks) > 1 else 0.0
    known = [v["growth"] for v in per.values() if v["growth"] is not None]
    return {"per_method": per, "overall": overall, "worst": max(known) if known else 0.0}


def memory_case(ctx: Any, cells: int = CELLS, task_name: str = "rotten-tomatoes") -> CaseResult:
    from bench.backends import shared_adapters
    from bench.resources import release_memory

    h, task = ctx.handle, ctx.task(task_name)
    n = ctx.n(8, 2)
    model_mb = sum(p.numel() * p.element_size() for p in h.model.parameters()) / 2**20
    release_memory()
    start = _rss_mb()
    methods = [METHODS[i % len(METHODS)] for i in range(cells)]
    peaks, after = [], []
    for name in methods:
        peaks.append(_cell(name, h, task, n))
        after.append(_rss_mb())
    left = shared_adapters.attached(h.model)
    copied = _cell("lora", h, task, n, copy_base=True)
    g = growth(peaks, methods)
    retained = (max(after[1:]) - after[0]) / after[0] if cells > 1 else 0.0
    value = max(g["worst"], retained)
    per = "; ".join(f"{m} {v['first_mb']:.0f} -> {v['later_max_mb']:.0f} MB ({v['growth']:+.1%})"
                    for m, v in g["per_method"].items() if v["growth"] is not None)
    return CaseResult(
        f"memory over {cells} adapter cells", "peak RSS growth (per method)", value, f"< {GROWTH_GOAL:.0%}",
        value < GROWTH_GOAL and not left,
        agree=f"{len(left)} adapters left attached; after release {retained:+.1%}",
        baseline=f"copy cell {copied:.0f} MB",
        optimised=f"overall cell 1 {peaks[0]:.0f} MB, max of 2-{cells} {max(peaks[1:] or peaks):.0f} MB "
                  f"({g['overall']:+.1%})",
        note=f"{cells} cells ({', '.join(METHODS)} in turn; 1 step of 2 {task_name} examples, {n} predictions "
             f"each, released as the executor releases a cell) on the shared {model_mb:.0f} MB model; per "
             f"method, first cell -> largest later peak: {per}; RSS before {start:.0f} MB, after each release "
             f"{', '.join(f'{x:.0f}' for x in after)} MB; the value is the larger of the worst per-method growth "
             f"and the growth of RSS after release; one LoRA cell over a private deep copy (the path before) "
             f"peaked at {copied:.0f} MB",
        details={"agreed": not left, "peaks_mb": peaks, "methods": methods, "after_mb": after, "start_mb": start,
                 "per_method": g["per_method"], "overall_growth": g["overall"], "worst_method_growth": g["worst"],
                 "after_release_growth": retained, "copy_cell_peak_mb": copied, "model_mb": model_mb,
                 "left_attached": left}, fmt="%")


def memory_case_fresh(ctx: Any, cells: int = CELLS, timeout_s: float = 1800.0) -> CaseResult:
    """`memory_case` in a new Python process that loads the embedded model itself."""
    with tempfile.TemporaryDirectory(prefix="bench-perf-memory-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench.perf_memory", str(out), str(cells)] + (["--quick"] if ctx.quick else [])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout or "").strip().splitlines()[-5:]
            return CaseResult(f"memory over {cells} adapter cells", "peak RSS growth (per method)", None,
                              f"< {GROWTH_GOAL:.0%}", False, agree="the fresh process failed",
                              note=f"exit {done.returncode}: " + " | ".join(tail))
        result = CaseResult(**json.loads(out.read_text(encoding="utf-8")))
    result.note += "; in a fresh process, as a run's worker runs its cells"
    return result


def _main(argv: list[str]) -> None:
    from bench.backends.hf import load_hf
    from bench.perf_cases import PerfContext
    from bench.resources import pin_allocator

    pin_allocator()  # as a Worker does, before the model loads
    ctx = PerfContext(quick="--quick" in argv, log=lambda m: None)
    ctx.handle = load_hf(device="cpu", log=lambda *a, **k: None, dtype="float32")
    result = memory_case(ctx, cells=int(argv[1]))
    result.details["pid"] = os.getpid()
    Path(argv[0]).write_text(json.dumps(dataclasses.asdict(result)), encoding="utf-8")


if __name__ == "__main__":
    _main(sys.argv[1:])

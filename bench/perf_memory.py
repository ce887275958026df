"""The memory case of `bench perf`: twelve adapter cells in a row on the loaded model.

Each cell attaches its adapter to the shared model (bench/backends/shared_adapters.py),
trains a step, answers a few test prompts and is dropped, as a run's cells are. The
measure is process RSS (psutil), sampled during every cell: RSS is what the machine
(and an OOM killer) sees, copies of the weights included, and it is the number the
issue's "memory only grows" report was about. The value is the growth of the largest
per-cell peak over cells 2-12 against cell 1's peak (goal < 10%). Beside it, one cell
over a private deep copy (the path every adapter cell took before) gives the peak that
copy costs, so the row also says how much memory a cell no longer needs.
"""
from __future__ import annotations

import copy
import gc
from typing import Any

from bench.perf import CaseResult

GROWTH_GOAL = 0.10
CELLS = 12
METHODS = ("lora", "dora", "ia3")


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _cell(name: str, handle: Any, task: Any, n: int, copy_base: bool = False) -> float:
    """One adapter cell (prepare, predict, drop); its peak RSS in MB."""
    from bench.resources import PeakMemory
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
        del art
        gc.collect()
    return peak.rss_mb


def memory_case(ctx: Any, cells: int = CELLS, task_name: str = "rotten-tomatoes") -> CaseResult:
    from bench.backends import shared_adapters

    h, task = ctx.handle, ctx.task(task_name)
    n = ctx.n(8, 2)
    model_mb = sum(p.numel() * p.element_size() for p in h.model.parameters()) / 2**20
    gc.collect()
    start = _rss_mb()
    peaks, after = [], []
    for i in range(cells):
        peaks.append(_cell(METHODS[i % len(METHODS)], h, task, n))
        after.append(_rss_mb())
    left = shared_adapters.attached(h.model)
    copied = _cell("lora", h, task, n, copy_base=True)
    growth = (max(peaks[1:]) - peaks[0]) / peaks[0] if cells > 1 else 0.0
    return CaseResult(
        f"memory over {cells} adapter cells", "peak RSS growth", growth, f"< {GROWTH_GOAL:.0%}",
        growth < GROWTH_GOAL and not left,
        agree=f"{len(left)} adapters left attached", baseline=f"copy cell {copied:.0f} MB",
        optimised=f"cell 1 {peaks[0]:.0f} MB, max of 2-{cells} {max(peaks[1:] or peaks):.0f} MB",
        note=f"{cells} cells ({', '.join(METHODS)} in turn; 1 step of 2 {task_name} examples, {n} predictions "
             f"each) on the shared {model_mb:.0f} MB model; RSS before {start:.0f} MB, after each cell "
             f"{', '.join(f'{x:.0f}' for x in after)} MB; one LoRA cell over a private deep copy (the path "
             f"before) peaked at {copied:.0f} MB",
        details={"agreed": not left, "peaks_mb": peaks, "after_mb": after, "start_mb": start,
                 "copy_cell_peak_mb": copied, "model_mb": model_mb, "left_attached": left}, fmt="%")

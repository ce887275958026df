"""Run-level cases of `bench perf` (cache, harness overhead) and the suite itself.

A tiny real run (one task; prompting, RAG and a few LoRA steps) goes through the
Runner twice. The cold run starts from empty index, adapter and prediction caches
(a private cache folder; the pinned assets and the converted model are linked in) and
is instrumented: the time inside model forward/generate, backward and optimizer steps,
embedding and FAISS search is real work, everything else is harness overhead. The
warm run repeats it: into a new run folder when the runner has a content-addressed
cache (`RunConfig.cache`), else into the same folder, whose finished cells it skips.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

from bench.perf import CaseResult, Probe, environment, probe_hot_paths, ratio_result, render_table, stopwatch
from bench.perf_cases import (PerfContext, ann_recall_case, dtype_case, generation_case, model_load_case,
                              prefix_case, retrieval_share_case, training_case)
from bench.perf_peers import lm_eval_case, trainer_cases
from bench.perf_memory import memory_case_fresh
from bench.perf_update import update_case
from bench.perf_vllm import vllm_case

CASES = ("model-load", "generation", "training", "cache", "retrieval", "ann", "prefix", "dtype", "lm-eval", "trainer",
         "vllm", "memory", "update")
GROUPS = {"peers": ("lm-eval", "trainer", "vllm")}  # the tools a team would use instead


def _private_cache(ctx: PerfContext) -> Path:
    """An empty cache folder that still sees the fetched assets and converted models."""
    from bench.paths import cache_root

    real, folder = cache_root(), ctx.workdir / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("assets", "downloads", "models"):
        if (real / part).exists() and not (folder / part).exists():
            (folder / part).symlink_to(real / part, target_is_directory=True)
    return folder


def _config(ctx: PerfContext, name: str):
    from bench.config import RunConfig

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    # Small, but not so small that fixed costs (loading the model and the embedder, a
    # second or two) hide the per-example work a real run (limit 100) is made of.
    data: dict[str, Any] = dict(
        tasks=[ctx.task_name], strategies=["prompting", "rag", "lora"], limit=ctx.n(16, 2), train_limit=64,
        out=str(ctx.workdir / "runs"), name=name, device="cpu",
        strategy_options={"lora": {"max_steps": ctx.n(4, 1), "eval_every": 10, "max_val_examples": ctx.n(8, 2)}})
    # The batch-1 latency probe is a measurement of its own, not part of this comparison.
    data.update({k: 0 for k in ("latency_sample", "warmup") if k in fields})
    return RunConfig(**data), "cache" in fields


def _rows(run_dir: Path) -> dict[tuple, str]:
    path = run_dir / "rows.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["strategy"], r["example_id"]): r["output"] for r in rows}


def run_level_cases(ctx: PerfContext) -> list[CaseResult]:
    from rich.console import Console

    from bench.execute import Worker
    from bench.runner import Runner

    saved = os.environ.get("ADAPTBENCH_CACHE")
    os.environ["ADAPTBENCH_CACHE"] = str(_private_cache(ctx))
    quiet = Console(quiet=True)
    try:
        cold_cfg, content_cache = _config(ctx, "cold")
        with Probe() as probe, Probe() as loads:
            probe_hot_paths(probe, type(ctx.handle.model))
            loads.wrap(Worker, "_load_model", "model load")
            with stopwatch() as t_cold:
                cold_dir = Runner(cold_cfg, console=quiet).run()
        warm_cfg = _config(ctx, "warm")[0] if content_cache else cold_cfg
        with stopwatch() as t_warm:
            warm_dir = Runner(warm_cfg, console=quiet).run()
    finally:
        if saved is None:
            os.environ.pop("ADAPTBENCH_CACHE", None)
        else:
            os.environ["ADAPTBENCH_CACHE"] = saved
    cold_rows, warm_rows = _rows(cold_dir), _rows(warm_dir)
    same = cold_rows == warm_rows
    how = "re-run into a new run folder, served by the content-addressed cache" if content_cache \
        else "re-run of the finished run folder (its ok cells are skipped)"
    cache = ratio_result("cache", t_cold[0], t_warm[0], 20.0, agree=f"{len(warm_rows)} rows " +
                         ("identical" if same else "DIFFER"),
                         note=f"{how}; {ctx.task_name}, prompting + rag + lora, {cold_cfg.limit} test examples; "
                              "both runs load the model from the converted cache",
                         details={"agreed": same, "content_cache": content_cache})
    work = probe.total()
    load_s = loads.seconds.get("model load", 0.0)
    share = 1 - work / t_cold[0]
    parts = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(probe.seconds.items()))
    overhead = CaseResult(
        "harness overhead", "of run wall time", share, "<= 10%", share <= 0.10,
        agree=f"model load {load_s / t_cold[0]:.1%}", baseline=f"run {t_cold[0]:.1f} s", optimised=f"work {work:.1f} s",
        note=f"the cold run above: {parts}; the rest (model load {load_s:.1f}s, task loading, prompt building, "
             "tokenisation, scoring, stores, reports) is overhead",
        details={"buckets": probe.seconds, "calls": probe.calls, "wall_s": t_cold[0], "model_load_s": load_s})
    return [cache, overhead]


def run_suite(ctx: PerfContext, only: list[str] | None = None, console: Any = None,
              out: str | Path | None = None) -> list[CaseResult]:
    """Every CPU case, in an order where each pays its own first-call costs."""
    from bench.perf import write_results

    chosen = [case for name in (only or CASES) for case in GROUPS.get(name, (name,))]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        from bench.errors import BenchError

        raise BenchError(f"bench perf: unknown case(s) {unknown}; known: {', '.join(CASES)}, "
                         f"and the group peers ({', '.join(GROUPS['peers'])})")
    steps: list[tuple[str, Callable[[], list[CaseResult]]]] = [
        ("model-load", lambda: [model_load_case(ctx)]),
        ("generation", lambda: [generation_case(ctx)]),
        ("training", lambda: [training_case(ctx)]),
        ("cache", lambda: run_level_cases(ctx)),
        ("retrieval", lambda: [retrieval_share_case(ctx)]),
        ("ann", lambda: [ann_recall_case(ctx)]),
        ("prefix", lambda: [prefix_case(ctx)]),
        ("dtype", lambda: [dtype_case(ctx)]),
        ("lm-eval", lambda: [lm_eval_case(ctx, "rotten-tomatoes"), lm_eval_case(ctx, "bbc-news")]),
        ("trainer", lambda: trainer_cases(ctx)),
        ("vllm", lambda: [vllm_case(ctx)]),
        ("memory", lambda: [memory_case_fresh(ctx)]),
        ("update", lambda: [update_case(ctx)]),
    ]
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would bury the table
    results: list[CaseResult] = []
    for name, step in steps:
        if name not in chosen:
            continue
        if ctx.handle is None and name not in ("model-load", "ann", "update"):
            from bench.backends.hf import load_hf

            ctx.handle = load_hf(device="cpu", log=lambda *a, **k: None, dtype="float32")
        ctx.log(f"perf: {name} ...")
        with stopwatch() as took:
            got = step()
        ctx.log(f"perf: {name} done in {took[0]:.0f}s")
        results += got
    env = environment()
    render_table(results, title=f"bench perf ({env['cpus']} CPUs, load {env['load_average']})", console=console)
    if out is not None:
        write_results(results, out, env)
    return results

"""The CPU cases of `bench perf`: generation, training, model load, retrieval.

Each case takes a `PerfContext` (the loaded handle and the sizes) and returns a
`CaseResult`; the baseline and the optimised path run back to back on the same
inputs. The run-level cases (cache, harness overhead) are in `bench/perf_run.py`.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.perf import CaseResult, Probe, probe_hot_paths, ratio_result, stopwatch


@dataclass
class PerfContext:
    handle: Any = None  # the embedded model, loaded once (by the model-load case)
    quick: bool = False
    log: Callable[[str], None] = print
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-perf-")))
    task_name: str = "product-facts"  # QA with generation; loads in a second (a seeded generator)
    _tasks: dict = field(default_factory=dict)

    def task(self, name: str | None = None):
        from tasks import load_task

        name = name or self.task_name
        if name not in self._tasks:
            self._tasks[name] = load_task(name, seed=0)
        return self._tasks[name]

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# -- generation -------------------------------------------------------------------
def generation_case(ctx: PerfContext, n_prompts: int | None = None, batch_size: int = 16,
                    max_new_tokens: int = 32) -> CaseResult:
    """HFBackend.generate (length-sorted, left-padded batches under inference mode)
    against a plain loop of `model.generate`, one prompt at a time, same greedy decoding.
    Prefill costs the same on both sides; batching wins on the decode steps, so the
    ratio grows with `max_new_tokens` (32 here: a short QA answer plus the model's chatter)."""
    import torch

    from strategies.prompts import build_prompt

    h, task = ctx.handle, ctx.task()
    n = n_prompts or ctx.n(16, 4)
    prompts = [build_prompt(h, task, ex.input) for ex in (task.test * 4)[:n]]
    eos = sorted({h.tokenizer.eos_token_id, *_as_list(getattr(h.model.generation_config, "eos_token_id", None))}
                 - {None})
    pad = h.tokenizer.pad_token_id if h.tokenizer.pad_token_id is not None else eos[0]
    h.generate(prompts[:1], max_new_tokens=2, batch_size=1)  # warm-up, paid by neither side

    def one(prompt: str) -> str:
        ids = torch.tensor([h.encode(prompt)], device=h.device)
        with torch.no_grad():
            out = h.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos)
        new = out[0, ids.shape[1]:].tolist()
        new = new[:next((k for k, t in enumerate(new) if t in eos), len(new))]
        return h.tokenizer.decode(new, skip_special_tokens=True).strip()

    with stopwatch() as t_loop:
        plain = [one(p) for p in prompts]
    with stopwatch() as t_batch:
        batched = h.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    same = sum(a == b.text for a, b in zip(plain, batched))
    tokens = sum(g.completion_tokens for g in batched)
    return ratio_result(
        "generation", t_loop[0], t_batch[0], 3.0, agree=f"{same}/{n} identical",
        baseline=f"{tokens / t_loop[0]:.1f} tok/s", optimised=f"{tokens / t_batch[0]:.1f} tok/s",
        note=f"{n} prompts ({task.name}, ~{sum(map(h.count_tokens, prompts)) // n} tokens), greedy, "
             f"max_new_tokens={max_new_tokens}, batch {batch_size} vs a per-example model.generate loop",
        details={"agreed": same == n, "loop_s": t_loop[0], "batched_s": t_batch[0], "tokens": tokens})


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# -- training ----------------------------------------------------------------------
def training_case(ctx: PerfContext, steps: int | None = None, **overrides: Any) -> CaseResult:
    """The LoRA trainer's data path (length-sorted batches, dynamic left padding, LM head on
    answer positions) against every batch padded to max_length with the LM head everywhere.
    Same seed, same batches, dropout off, so the validation losses must match."""
    from strategies.base import Budget
    from strategies.lora import build

    steps = steps or ctx.n(4, 2)
    options = {"max_steps": steps, "batch_size": 4, "eval_every": steps, "max_val_examples": ctx.n(8, 4),
               "dropout": 0.0, "max_length": 256, "max_train_examples": 64, "packing": False, **overrides}
    task = ctx.task()
    # Warm-up, paid by neither side: the first backward pass of a process is many times slower.
    build({**options, "max_steps": 1, "max_val_examples": 1, "max_train_examples": 4}).prepare(
        task, ctx.handle, Budget(seed=0))
    runs = {}
    for label, extra in (("padded", {"pad_to_max": True}), ("dynamic", {})):
        art = build({**options, **extra}).prepare(task, ctx.handle, Budget(seed=0))
        runs[label] = art.info
        del art
    base, fast = runs["padded"], runs["dynamic"]
    val = [next(c["val_loss"] for c in reversed(r["loss_curve"]) if c["val_loss"] is not None) for r in (base, fast)]
    gap = abs(val[0] - val[1]) / max(abs(val[0]), 1e-9)
    ratio = fast["tokens_per_s"] / base["tokens_per_s"]
    # Both see the same real tokens, so tokens/s over step time is the fair throughput.
    return CaseResult(
        "training", "tokens/s ratio", ratio, ">= 1.5x", ratio >= 1.5 and gap <= 0.01,
        agree=f"val loss {val[0]:.4f} vs {val[1]:.4f} ({gap:.2%})",
        baseline=f"{base['tokens_per_s']:.0f} tok/s", optimised=f"{fast['tokens_per_s']:.0f} tok/s",
        note=f"LoRA r=8 on {task.name}, {steps} steps of 4 sequences, max_length {options['max_length']}; "
             "baseline pads every batch to max_length and runs the LM head at every position",
        details={"padded": _slim(base), "dynamic": _slim(fast), "val_loss_gap": gap})


def _slim(info: dict) -> dict:
    keys = ("steps", "tokens_seen", "train_step_seconds", "tokens_per_s", "best_val_loss", "final_train_loss")
    return {k: info.get(k) for k in keys}


# -- model load ----------------------------------------------------------------------
@contextlib.contextmanager
def private_models_cache(folder: Path):
    """Converted models go to `folder`, every other cache stays where it is: the first
    load must really convert, and the user's converted cache is left alone."""
    import bench.paths

    original = bench.paths.cache_dir

    def cache_dir(*parts: str) -> Path:
        if parts and parts[0] == "models":
            path = folder.joinpath(*parts)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return original(*parts)

    bench.paths.cache_dir = cache_dir
    try:
        yield folder
    finally:
        bench.paths.cache_dir = original


def model_load_case(ctx: PerfContext, spec: str = "smollm2-135m") -> CaseResult:
    """First load (GGUF dequantised and converted to safetensors) against the second
    (from the converted cache). Leaves the second handle in `ctx` for the other cases."""
    import torch

    from bench.backends.hf import load_hf

    folder = ctx.workdir / "converted"
    quiet = lambda *a, **k: None  # noqa: E731
    with private_models_cache(folder):
        with stopwatch() as t_first:
            first = load_hf(spec, device="cpu", log=quiet)
        with stopwatch() as t_second:
            second = load_hf(spec, device="cpu", log=quiet)
    ids = torch.tensor([second.encode("The capital of France is")])
    with torch.inference_mode():
        same = torch.equal(first.model(ids).logits, second.model(ids).logits)
    del first
    shutil.rmtree(folder, ignore_errors=True)
    ctx.handle = second
    return ratio_result("model load", t_first[0], t_second[0], 5.0, agree="same logits" if same else "DIFFERENT",
                        note=f"{spec}: first load converts the GGUF into an empty cache folder, the second "
                             "reads the converted safetensors", details={"agreed": same})


# -- retrieval -------------------------------------------------------------------------
def retrieval_share_case(ctx: PerfContext, n_queries: int | None = None) -> CaseResult:
    """Share of RAG's predict time spent embedding queries and searching the index."""
    from strategies.base import Budget
    from strategies.rag import build

    n = n_queries or ctx.n(8, 2)
    task, rag = ctx.task(), build({})
    art = rag.prepare(task, ctx.handle, Budget(seed=0))
    with Probe() as probe:
        probe_hot_paths(probe, type(ctx.handle.model))
        with stopwatch() as wall:
            rag.predict(art, task.test[:n])
    share = probe.seconds.get("retrieval", 0.0) / wall[0]
    return CaseResult("retrieval share", "of RAG predict", share, "<= 10%", share <= 0.10,
                      agree=f"{art.info['index']} index, {art.info['n_chunks']} chunks",
                      baseline=f"{wall[0] / n * 1e3:.0f} ms/query", optimised=f"{probe.seconds.get('retrieval', 0) / n * 1e3:.1f} ms retrieval",
                      note=f"{n} {task.name} queries, top_k 3: embedding + FAISS search vs the whole predict call")


def synthetic_vectors(n: int, dim: int = 384, clusters: int = 200, latent: int = 32, seed: int = 0):
    """Clustered, L2-normalised float32 vectors: each cluster a centre plus a random
    `latent`-dimensional subspace plus small isotropic noise (sentence embeddings
    have a low intrinsic dimension; i.i.d. noise in 384 dimensions would not)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    label = rng.integers(0, clusters, n)
    x = centres[label] + 0.3 * rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)
    z = rng.standard_normal((n, latent), dtype=np.float32)
    for c in range(clusters):
        rows = label == c
        x[rows] += z[rows] @ (rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def ann_recall_case(ctx: PerfContext, n: int | None = None, n_queries: int = 500) -> CaseResult:
    """The index RAG's `build_index` chooses for this many vectors, with RAG's search
    settings, against exact (flat) search: recall@10."""
    import dataclasses

    import faiss
    import numpy as np

    from strategies.rag import RagConfig, _tune, build_index

    n = n or ctx.n(100_000, 4_000)
    cfg = RagConfig() if not ctx.quick else dataclasses.replace(RagConfig(), flat_max=1_000)
    vectors = synthetic_vectors(n + n_queries)
    base, queries = vectors[:n], vectors[n:]
    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    with stopwatch() as t_flat:
        _, truth = flat.search(queries, 10)
    with stopwatch() as t_build:
        index, kind = build_index(base, cfg)
    _tune(index, cfg, 10)
    with stopwatch() as t_ann:
        _, found = index.search(queries, 10)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)]))
    knobs = f"M={cfg.hnsw_m}, efSearch={cfg.ef_search}" if kind == "hnsw" else f"nprobe={cfg.nprobe}"
    return CaseResult("ANN recall@10", "recall@10", recall, ">= 0.95", recall >= 0.95, agree=f"{kind} index",
                      baseline=f"flat {t_flat[0] / n_queries * 1e3:.2f} ms/q",
                      optimised=f"{kind} {t_ann[0] / n_queries * 1e3:.2f} ms/q",
                      note=f"{n:,} synthetic clustered vectors, dim 384, {n_queries} queries; {kind} ({knobs}) "
                           f"built in {t_build[0]:.0f} s", details={"index": kind, "build_s": t_build[0]})

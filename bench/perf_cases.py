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
            first = load_hf(spec, device="cpu", log=quiet, dtype="float32")
        with stopwatch() as t_second:
            second = load_hf(spec, device="cpu", log=quiet, dtype="float32")
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


# -- shared-prefix reuse -------------------------------------------------------------
def prefix_case(ctx: PerfContext, n: int | None = None, k: int = 4, task_name: str = "rotten-tomatoes",
                batch_size: int = 32) -> CaseResult:
    """k-shot label scoring with the static prefix cache (the demonstrations' KV computed
    once, bench/backends/prefix.py) against the same backend without it."""
    import dataclasses

    from strategies.prompts import build_prompt, pick_demos, reserve_tokens

    h, task = ctx.handle, ctx.task(task_name)
    n = n or ctx.n(64, 8)
    demos = pick_demos(task.train, k, 0, task.labels)
    prompts = [build_prompt(h, task, ex.input, demos=demos, reserve=reserve_tokens(task)) for ex in task.test[:n]]
    labels = list(task.labels)
    plain, cached = (dataclasses.replace(h, prefix_cache=on) for on in (False, True))  # fresh memos
    plain.score_choices(prompts[:1], labels, batch_size=1)  # warm-up, paid by neither side
    with stopwatch() as t_plain:
        want = plain.score_choices(prompts, labels, batch_size=batch_size)
    with stopwatch() as t_cached:  # includes computing the prefix once
        got = cached.score_choices(prompts, labels, batch_size=batch_size)
    same = sum(a.best == b.best for a, b in zip(want, got))
    gap = max(abs(x - y) for a, b in zip(want, got) for x, y in zip(a.logprobs, b.logprobs))
    seqs = [h.encode(p) for p in prompts]
    from bench.backends.prefix import common_prefix

    shared = common_prefix(seqs)
    return ratio_result(
        "prefix cache (4-shot)" if k == 4 else f"prefix cache ({k}-shot)", t_plain[0], t_cached[0], 1.5,
        agree=f"{same}/{n} same label, max |dlogp| {gap:.1e}",
        note=f"{n} {k}-shot {task_name} prompts (~{sum(map(len, seqs)) // n} tokens, {shared} shared), "
             f"score_choices batch {batch_size} with and without the static prefix cache",
        details={"agreed": same == n and gap <= 1e-3, "shared_tokens": shared, "max_logprob_gap": gap})


# -- dtype ---------------------------------------------------------------------------
def dtype_case(ctx: PerfContext, n: int | None = None, n_gen: int | None = None, max_new_tokens: int = 24,
               record: bool = True) -> CaseResult:
    """bf16 weights against fp32 on the same prompts: zero-shot labels (rotten-tomatoes,
    bbc-news) and greedy text (product-facts). The agreement is the evidence `--dtype
    auto` needs on a CPU with native bf16 (bench/dtypes.py); it is recorded when it passes."""
    import copy
    import dataclasses

    import torch

    from bench import dtypes
    from bench.perf_peers import scoring_inputs
    from strategies.prompts import build_prompt

    h = ctx.handle
    native = dtypes.native_bf16()
    low = dataclasses.replace(h, model=copy.deepcopy(h.model).to(torch.bfloat16).eval(),
                              extra={**(h.extra or {}), "dtype": "bfloat16"})
    n, n_gen = n or ctx.n(32, 4), n_gen or ctx.n(16, 2)
    labels_same = labels_total = 0
    times = {"float32": 0.0, "bfloat16": 0.0}
    for name in ("rotten-tomatoes", "bbc-news"):
        task, prompts, _ = scoring_inputs(ctx, name, n)
        picks = {}
        for label, lm in (("float32", h), ("bfloat16", low)):
            lm.score_choices(prompts[:1], list(task.labels), batch_size=1)  # warm-up
            with stopwatch() as took:
                picks[label] = [s.best for s in lm.score_choices(prompts, list(task.labels), batch_size=32)]
            times[label] += took[0]
        labels_same += sum(a == b for a, b in zip(picks["float32"], picks["bfloat16"]))
        labels_total += len(prompts)
    qa = ctx.task()
    gen_prompts = [build_prompt(h, qa, ex.input) for ex in (qa.test * 4)[:n_gen]]
    texts = {}
    for label, lm in (("float32", h), ("bfloat16", low)):
        with stopwatch() as took:
            texts[label] = [g.text for g in lm.generate(gen_prompts, max_new_tokens=max_new_tokens, batch_size=16)]
        times[label] += took[0]
    text_same = sum(a == b for a, b in zip(texts["float32"], texts["bfloat16"]))
    agreement = {"labels": labels_same / labels_total, "text": text_same / len(gen_prompts)}
    ok = dtypes.passes(agreement)
    weights = (h.extra or {}).get("weights")
    recorded = ""
    if record and ok and native and weights and not ctx.quick:
        recorded = f"; recorded for --dtype auto ({dtypes.record_agreement(weights, agreement, {'cpu': dtypes.cpu_model()})})"
    del low
    verdict = "auto picks bf16" if ok and native else "auto keeps fp32"
    return ratio_result(
        "bf16 vs fp32", times["float32"], times["bfloat16"], 1.0,
        agree=f"labels {labels_same}/{labels_total}, text {text_same}/{len(gen_prompts)}: {verdict}",
        note=f"{labels_total} zero-shot label prompts and {len(gen_prompts)} greedy generations "
             f"({max_new_tokens} new tokens) in fp32 and bf16 weights; thresholds labels >= "
             f"{dtypes.AGREEMENT['labels']:.0%}, text >= {dtypes.AGREEMENT['text']:.0%}; native bf16 on this CPU: "
             f"{native}{recorded}",
        details={"agreed": ok, "agreement": agreement, "native_bf16": native, "fp32_s": times["float32"],
                 "bf16_s": times["bfloat16"]})

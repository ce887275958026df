"""The peer cases of `bench perf`: the bench's fast paths against the tools a team would
use instead, in the same process and run, on the same model and the same inputs.

- `lm-eval`: the bench's zero-shot label scoring (`HFBackend.score_choices`, batch 32:
  the shared instruction prefix from its KV cache, the prompts packed into rows without
  padding and one forward pass for every label when the labels' tokens allow it, the LM
  head on scored positions only)
  against lm-evaluation-harness's `hf` backend (`HFLM.loglikelihood`, batch 32) on
  rotten-tomatoes and bbc-news prompts: accuracy of both, label agreement, ratio.
- `trainer`: the bench's LoRA trainer against Hugging Face `Trainer` + PEFT with dynamic
  padding (bench/perf_gpu.py's baseline) on the device at hand: same examples, r=8
  all-linear, same steps, each in its own batch order (Trainer's default shuffle); ratio
  and the validation loss of both adapters. The bench trains as a run does (bf16 autocast
  where bf16 is native); on such a CPU a second row times Trainer with its own
  `bf16=True` as well, so both ratios are shown. Agreement is checked where it can be
  exact: both trainers from the same initial adapter over the same batches in the same
  order, in the same precision, must take the same steps (`same_steps`); the timed runs'
  validation losses differ by their batch order (12 steps, ~50 answer tokens), so they are
  reported, not judged.
- `vllm` (bench/perf_vllm.py): generation against the managed vLLM server.
A peer that is not installed gives a skipped row that says why (`pip install -e .[peers]`).
"""
from __future__ import annotations

import importlib.util
from typing import Any

from bench.perf import CaseResult, ratio_result, stopwatch

SCORING_GOAL = 3.0
TRAINING_GOAL = 2.0
# The two trainers from the same initial adapter over the same batches in the same order
# must take the same steps: per-step training loss within this (fp32 agreed to 1e-5).
SAME_STEPS_TOLERANCE = 0.02
CHECK_STEPS = 4


def missing(module: str) -> str | None:
    """Why a peer cannot run here, or None."""
    if importlib.util.find_spec(module) is None:
        return f"skipped: {module} is not installed (`.venv/bin/pip install -e .[peers]`)"
    return None


def scoring_inputs(ctx: Any, task_name: str, n: int) -> tuple[Any, list[str], list[str]]:
    """The bench's zero-shot prompts for `n` test examples and their gold labels."""
    from strategies.prompts import build_prompt, reserve_tokens

    task = ctx.task(task_name)
    examples = list(task.test[:n])
    prompts = [build_prompt(ctx.handle, task, ex.input, reserve=reserve_tokens(task)) for ex in examples]
    return task, prompts, [ex.target for ex in examples]


def lm_eval_scores(hflm: Any, prompts: list[str], labels: tuple[str, ...]) -> list[int]:
    """lm-eval's choice for each prompt: the label with the highest summed log-likelihood,
    as its multiple-choice tasks score `acc`."""
    from lm_eval.api.instance import Instance

    requests = [Instance(request_type="loglikelihood", doc={}, arguments=(p, label), idx=j)
                for p in prompts for j, label in enumerate(labels)]
    out = hflm.loglikelihood(requests, disable_tqdm=True)
    k = len(labels)
    return [max(range(k), key=lambda j: out[i * k + j][0]) for i in range(len(prompts))]


def lm_eval_case(ctx: Any, task_name: str, n: int | None = None, batch_size: int = 32) -> CaseResult:
    case = f"scoring vs lm-eval ({task_name})"
    reason = missing("lm_eval")
    if reason:
        return CaseResult(case, "speed-up", None, f">= {SCORING_GOAL:g}x", None, note=reason)
    from lm_eval.models.huggingface import HFLM

    h = ctx.handle
    n = n or ctx.n(64, 4)
    task, prompts, gold = scoring_inputs(ctx, task_name, n)
    labels = tuple(task.labels)
    hflm = HFLM(pretrained=h.model, tokenizer=h.tokenizer, batch_size=batch_size, device=h.device)
    # Warm-up on one prompt, paid by neither side.
    h.score_choices(prompts[:1], list(labels), batch_size=1)
    lm_eval_scores(hflm, prompts[:1], labels)
    with stopwatch() as t_peer:
        theirs = lm_eval_scores(hflm, prompts, labels)
    with stopwatch() as t_bench:
        ours = [s.best for s in h.score_choices(prompts, list(labels), batch_size=batch_size)]
    same = sum(a == b for a, b in zip(ours, theirs))
    acc = [sum(labels[c] == g for c, g in zip(picks, gold)) / n for picks in (ours, theirs)]
    import lm_eval

    version = getattr(lm_eval, "__version__", "0.4")
    return ratio_result(
        case, t_peer[0], t_bench[0], SCORING_GOAL, agree=f"{same}/{n} same label; acc {acc[0]:.3f} vs {acc[1]:.3f}",
        baseline=f"lm-eval {t_peer[0]:.2f} s", optimised=f"bench {t_bench[0]:.2f} s",
        note=f"{n} zero-shot {task_name} prompts x {len(labels)} labels; lm-eval {version} HFLM.loglikelihood "
             f"batch {batch_size} vs HFBackend.score_choices batch {batch_size}, same model object",
        details={"agreed": same == n, "n": n, "same": same, "accuracy_bench": acc[0], "accuracy_lm_eval": acc[1],
                 "lm_eval_s": t_peer[0], "bench_s": t_bench[0], "lm_eval": version})


def trainer_case(ctx: Any, **kw: Any) -> CaseResult:
    """The goal row of `trainer_cases`: the bench against Trainer + PEFT in fp32 on a CPU."""
    return trainer_cases(ctx, **kw)[0]


def same_steps(h: Any, seqs: list, batch_size: int, max_length: int, lr: float, autocast: str,
               steps: int = CHECK_STEPS) -> dict[str, Any]:
    """The bench's `train_loop` and Trainer from one initial adapter (seed 0, built as
    `hf_trainer` builds it) over the batches `train_loop` draws, in its order, at the
    bench's precision: their per-step training losses and the largest relative gap."""
    import random

    import torch
    from peft import LoraConfig, get_peft_model

    from bench.backends.shared_adapters import clean_copy
    from bench.perf_gpu import hf_trainer
    from strategies import lora_data as data
    from strategies.lora import build
    from strategies.train_loop import train_loop
    from strategies.training import quiet_peft

    seqs = seqs[: steps * batch_size]
    cfg = build({"max_steps": steps, "batch_size": batch_size, "max_length": max_length, "dropout": 0.0,
                 "learning_rate": lr, "max_val_examples": 0, "forgetting": False, "autocast": autocast}).config
    torch.manual_seed(0)
    with quiet_peft():
        model = get_peft_model(clean_copy(h.model), LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16.0,
                                                               lora_dropout=0.0, target_modules="all-linear"))
    ours = train_loop(model, seqs, [], cfg, random.Random(0), h.device, h.pad_token_id, None)
    del model
    order = [i for b in data.length_batches(seqs, batch_size, random.Random(0)) for i in b]  # train_loop's draw
    theirs = hf_trainer(h, [seqs[i] for i in order], steps, batch_size, 1, max_length, lr=lr, dynamic=True,
                        bf16=ours["autocast"] is not None, sequential=True)
    a = [c["train_loss"] for c in ours["loss_curve"] if c["train_loss"] is not None]
    b = theirs["step_losses"]
    gap = max(abs(x - y) / max(abs(y), 1e-9) for x, y in zip(a, b)) if len(a) == len(b) == steps else float("inf")
    return {"bench": a, "trainer": b, "gap": gap, "agreed": gap <= SAME_STEPS_TOLERANCE, "steps": steps,
            "precision": ours["autocast"] or "float32"}


def trainer_cases(ctx: Any, steps: int | None = None, batch_size: int | None = None, max_length: int = 256,
                  task_name: str = "bbc-news", lr: float = 1e-3, autocast: str = "auto") -> list[CaseResult]:
    """The bench's LoRA trainer (`autocast` as a run's default: bf16 where native) against
    Trainer + PEFT with dynamic padding, on `ctx.handle`'s device. On a CPU Trainer's
    default is fp32; when the bench trained in bf16 a second row times Trainer with its
    own `bf16=True` too, so the ratio over each is shown."""
    case = "training vs Trainer+PEFT"
    reason = missing("peft")
    if reason:
        return [CaseResult(case, "speed-up", None, f">= {TRAINING_GOAL:g}x", None, note=reason)]
    from bench.perf_gpu import bench_trainer, eval_loss, hf_trainer, train_sequences

    h = ctx.handle
    steps, batch_size = steps or ctx.n(12, 2), batch_size or ctx.n(8, 2)
    task = ctx.task(task_name)
    task, seqs, val_seqs = train_sequences(h, steps * batch_size, max_length, task=task)
    val_seqs = val_seqs[: ctx.n(16, 4)]
    # Warm-up in both precisions, paid by no side: the first backward pass of a process
    # (and the first bf16 one) is many times slower.
    warm = train_sequences(h, 2, max_length, task=task)[0]
    for mode in dict.fromkeys(("off", autocast)):
        bench_trainer(h, warm, 1, 2, 1, max_length, learning_rate=lr, autocast=mode)
    ours = bench_trainer(h, task, steps, batch_size, 1, max_length, learning_rate=lr, autocast=autocast)
    val_ours = eval_loss(ours.pop("model"), val_seqs, h.device)
    peers = [hf_trainer(h, seqs, steps, batch_size, 1, max_length, lr=lr, dynamic=True)]
    if ours.get("autocast") and not peers[0]["bf16"]:
        peers.append(hf_trainer(h, seqs, steps, batch_size, 1, max_length, lr=lr, dynamic=True, bf16=True))
    check = same_steps(h, seqs, batch_size, max_length, lr, autocast, steps=min(CHECK_STEPS, steps))
    tokens = sum(len(s.ids) for s in seqs)
    ours_dtype = f"bf16 autocast over fp32 weights ({ours.get('autocast_why')})" if ours.get("autocast") \
        else f"fp32 ({ours.get('autocast_why')})"
    same = f"same init and batches ({check['precision']}): {check['steps']} step losses within {check['gap']:.2%}"
    rows = []
    for theirs in peers:
        val_theirs = eval_loss(theirs.pop("model"), val_seqs, h.device)
        their_dtype = "bf16=True (bf16 autocast over fp32 weights)" if theirs["bf16"] else "fp32 (its CPU default)"
        goal_row = not rows
        kw = dict(
            agree=f"{same}; timed runs' val loss {val_ours:.4f} vs {val_theirs:.4f}",
            baseline=f"Trainer {tokens / theirs['train_step_seconds']:.0f} tok/s",
            optimised=f"bench {tokens / ours['train_step_seconds']:.0f} tok/s",
            note=f"LoRA r=8 all-linear, {steps} steps of {batch_size} {task_name} examples ({tokens:,} tokens, "
                 f"max_length {max_length}) on {h.device}; Trainer + PEFT with dynamic padding "
                 f"(DataCollatorForSeq2Seq) and its shuffled batches in {their_dtype}, "
                 f"{theirs['train_step_seconds']:.1f} s vs the bench in {ours_dtype}, "
                 f"{ours['train_step_seconds']:.1f} s. Agreement: both from one initial adapter over the bench's "
                 f"batches in its order at the bench's precision, per-step loss gap allowed "
                 f"{SAME_STEPS_TOLERANCE:.0%} (bench {check['bench']}, Trainer "
                 f"{[round(x, 5) for x in check['trainer']]}); the timed runs' validation losses (fp32) differ "
                 f"by batch order and are not judged",
            details={"agreed": check["agreed"], "same_steps": check, "val_loss_bench": val_ours,
                     "val_loss_trainer": val_theirs, "tokens": tokens, "bench_s": ours["train_step_seconds"],
                     "trainer_s": theirs["train_step_seconds"], "trainer_mean_train_loss": theirs["final_train_loss"],
                     "bench_final_train_loss": ours.get("final_train_loss"), "bench_autocast": ours.get("autocast"),
                     "bench_autocast_why": ours.get("autocast_why"), "trainer_bf16": theirs["bf16"]})
        if goal_row:
            rows.append(ratio_result(case, theirs["train_step_seconds"], ours["train_step_seconds"], TRAINING_GOAL,
                                     **kw))
        else:  # the like-for-like precision: reported beside the goal row, not a goal of its own
            ratio = theirs["train_step_seconds"] / ours["train_step_seconds"]
            rows.append(CaseResult(f"{case} (Trainer bf16)", "speed-up", ratio, "report", None, fmt="x", **kw))
    return rows

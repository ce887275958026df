"""The optimisation loop every weight-changing strategy shares (strategies/training.py):
AdamW with linear warmup and decay; validation loss before training and every
`eval_every` steps; the best weights by validation loss (which may be the untouched ones)
restored at the end; early stop after `patience` bad evaluations; a non-finite loss is
an error the user can fix, not a result; CUDA OOM halves the micro-batch (gradient
accumulation keeps the step's batch); bf16 autocast where bf16 is native (`autocast`);
AdamW's fused kernel."""
from __future__ import annotations

import contextlib
import math
import random
import time
from typing import Any

from bench.errors import BenchError
from bench.progress import phase


def train_loop(module, seqs, val_seqs, cfg: Any, rng: random.Random, device: str, pad_id: int, progress,
               label: str = "train") -> dict[str, Any]:
    """AdamW with linear warmup and decay and the gradient norm clipped; keeps the best
    weights by validation loss."""
    import torch

    from strategies import lora_data as data

    packed = cfg.packing is True or (cfg.packing == "auto" and device.startswith("cuda"))
    pad_to = cfg.max_length if cfg.pad_to_max and not packed else None

    def make_batch(items):
        return data.pack(items) if packed else data.collate(items, pad_id, pad_to)

    params = [p for p in module.parameters() if p.requires_grad]
    per_epoch = math.ceil(math.ceil(len(seqs) / cfg.batch_size) / cfg.grad_accum)
    total = min(cfg.epochs * per_epoch, cfg.max_steps or cfg.epochs * per_epoch)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                  **fused_adamw(params))
    warm = cfg.warmup_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if s < warm
                                                 else max(0.0, (total - s) / max(1, total - warm)))
    low, why = autocast_dtype(cfg.autocast, device)
    autocast = (lambda: torch.autocast(device.split(":")[0], dtype=getattr(torch, low))) if low \
        else contextlib.nullcontext

    def evaluate() -> float:
        module.eval()
        loss_sum, count = 0.0, 0
        with torch.no_grad(), autocast():
            for idx in data.length_batches(val_seqs, cfg.batch_size, None):
                loss, n = data.batch_loss(module, data.collate([val_seqs[i] for i in idx], pad_id), device)
                loss_sum, count = loss_sum + float(loss), count + n
        module.train()
        value = loss_sum / max(count, 1)
        if not math.isfinite(value):
            raise diverged(value, step, cfg)
        return value

    def snapshot() -> dict[str, Any]:
        return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}

    step, tokens, epochs_run, bad_evals, stopped, train_loss = 0, 0, 0, 0, False, float("nan")
    step_seconds = 0.0  # optimizer steps only, without validation: what tokens/s is over
    split, oom_retries = 1, 0  # micro-batches per batch after CUDA out-of-memory errors
    curve: list[dict[str, Any]] = []
    best, best_state, best_step = math.inf, None, None
    if val_seqs:  # the untouched weights are a candidate too: training never ends worse on validation
        best, best_state, best_step = evaluate(), snapshot(), 0
        curve.append({"step": 0, "train_loss": None, "val_loss": round(best, 5)})
    module.train()
    with phase(progress, label, total) as bar:
        while step < total and not stopped:
            epochs_run += 1
            batches = data.length_batches(seqs, cfg.batch_size, rng)
            for g in range(0, len(batches), cfg.grad_accum):
                t_step = time.perf_counter()
                while True:  # CUDA OOM: halve the micro-batches; accumulation keeps the step's batch
                    # Cut by sequences, not tensor rows, so packed batches (one row) split too.
                    group = [make_batch([seqs[i] for i in part]) for idx in batches[g:g + cfg.grad_accum]
                             for part in _parts(idx, split)]
                    n_total = sum(int((b["labels"] != data.IGNORE).sum()) for b in group) or 1
                    optimizer.zero_grad(set_to_none=True)
                    try:
                        loss_sum, seen = _accumulate(module, group, n_total, device, autocast,
                                                     cfg.pad_to_max and not packed)
                        break
                    except torch.cuda.OutOfMemoryError:
                        if max(len(idx) for idx in batches[g:g + cfg.grad_accum]) <= split:
                            raise BenchError(f"{label}: CUDA out of memory even at micro-batch 1 (step {step + 1}); "
                                             "lower max_length or use a smaller model") from None
                        split *= 2
                        oom_retries += 1
                        if torch.cuda.is_available():
                            torch.cuda.empty_cache()
                tokens += seen
                train_loss = loss_sum / n_total
                step += 1
                if not math.isfinite(train_loss):
                    raise diverged(train_loss, step, cfg)
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
                optimizer.step()
                schedule.step()
                step_seconds += time.perf_counter() - t_step
                bar.advance(1)
                bar.note(f"loss {train_loss:.3f}")
                val = evaluate() if val_seqs and (step % cfg.eval_every == 0 or step == total) else None
                curve.append({"step": step, "train_loss": round(train_loss, 5),
                              "val_loss": None if val is None else round(val, 5)})
                if val is not None:
                    if val < best:
                        best, best_state, best_step, bad_evals = val, snapshot(), step, 0
                    else:
                        bad_evals += 1
                        stopped = bad_evals >= cfg.patience and step < total
                if stopped or step >= total:
                    break
    if best_state is not None:
        with torch.no_grad():
            for name, param in module.named_parameters():
                if name in best_state:
                    param.copy_(best_state[name])
    del optimizer, best_state  # full-ft: two more copies of every weight
    return {"steps": step, "epochs_run": epochs_run, "tokens_seen": tokens,
            "best_val_loss": None if best_step is None else round(best, 5), "best_step": best_step,
            "final_train_loss": round(train_loss, 5), "stopped_early": stopped, "loss_curve": curve,
            "oom_retries": oom_retries, "packing": packed, "autocast": low, "autocast_why": why,
            "train_step_seconds": round(step_seconds, 3),
            "tokens_per_s": round(tokens / step_seconds, 1) if step_seconds else None,
            "micro_batch_size": max(1, math.ceil(cfg.batch_size / split)), "grad_accum_used": cfg.grad_accum * split}


def autocast_dtype(setting: str, device: str, native: bool | None = None) -> tuple[str | None, str]:
    """(the autocast dtype or None, why) for the training option `autocast` on `device`.
    Mixed precision: weights, gradients and optimizer state stay as loaded (fp32 on CPU);
    only the matmuls run in bf16. `auto` picks it where bf16 is native: CUDA, or a CPU
    with bf16 matrix instructions that PyTorch's oneDNN uses (bench/dtypes.py's test),
    where it halves a matmul's time; elsewhere emulated bf16 is slower, so fp32."""
    if setting == "off":
        return None, "off: asked for"
    if setting == "bf16":
        return "bfloat16", "bf16: asked for"
    if device.startswith("cuda"):
        return "bfloat16", "auto: CUDA"
    if not device.startswith("cpu"):
        return None, f"auto: fp32 on {device}"
    from bench.dtypes import native_bf16

    if native_bf16() if native is None else native:
        return "bfloat16", "auto: native bf16 on this CPU (avx512_bf16/amx_bf16 with oneDNN)"
    return None, "auto: this CPU has no native bf16, so fp32"


def fused_adamw(params: list) -> dict[str, bool]:
    """AdamW's fused kernel (one pass over all tensors; CPU and CUDA in torch >= 2.4)
    where every parameter is a float tensor it takes, instead of a Python loop of small
    ops per tensor: 20-40 ms against 130-390 ms a step for r=8 LoRA on SmolLM2 here."""
    import torch

    ok = bool(params) and all(p.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
                              and p.device.type in ("cpu", "cuda") for p in params)
    return {"fused": True} if ok and _fused_supported() else {}


def _fused_supported() -> bool:
    import inspect

    import torch

    return "fused" in inspect.signature(torch.optim.AdamW).parameters


def _parts(idx: list[int], split: int) -> list[list[int]]:
    size = max(1, math.ceil(len(idx) / split))
    return [idx[s:s + size] for s in range(0, len(idx), size)]


def _accumulate(module, group, n_total: int, device: str, autocast, all_logits: bool = False) -> tuple[float, int]:
    """Backward over the micro-batches of one step; the summed loss over them / their
    token count equals one big batch's, however the batch was cut."""
    from strategies import lora_data as data

    loss_sum, seen = 0.0, 0
    for batch in group:
        with autocast():
            loss, _ = data.batch_loss(module, batch, device, all_logits)
        (loss / n_total).backward()
        loss_sum += loss.item()
        seen += int(batch["attention_mask"].sum())
    return loss_sum, seen


def diverged(loss: float, step: int, cfg: Any) -> BenchError:
    return BenchError(f"{cfg.PREFIX} training diverged (loss={loss} at step {step}); lower learning_rate "
                      f"(now {cfg.learning_rate:g}) or add warmup_steps")

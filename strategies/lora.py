"""LoRA fine-tuning: train low-rank adapters beside the frozen weights, then answer
with the same zero-shot prompt that `prompting` uses, so the only difference between
the two is the weights.

- The shared handle is never touched: `prepare` deep-copies its model and wraps the copy.
- The loss is on answer tokens only (see `strategies/lora_data.py`).
- Validation loss is measured before training and every `eval_every` steps; the best
  adapter (which may be the untrained, zero-delta one) is restored at the end, and
  training stops after `patience` evaluations without improvement.
- A non-finite loss is an error the user can fix (a lower learning rate), not a result.
- On a GPU (`packing: auto`) each batch is packed into one row without padding and
  without cross-attention between its sequences; on a CPU left-padded, length-sorted
  batches with the LM head on answer positions only are faster. `pad_to_max` is the
  plain baseline `bench perf` compares against, not something to use.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import random
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError
from bench.options import config_from
from bench.progress import phase
from strategies.base import Artifacts, Budget, Prediction
from strategies.prompts import build_prompt, predict_prompts, reserve_tokens

_INTS = {"r": 1, "epochs": 1, "batch_size": 1, "grad_accum": 1, "max_length": 8, "eval_every": 1,
         "patience": 1, "max_val_examples": 0, "warmup_steps": 0, "predict_batch_size": 1}
_OPTIONAL_INTS = {"max_steps": 1, "max_train_examples": 1}
_FLOATS = {"alpha": 0.0, "learning_rate": 0.0, "weight_decay": 0.0}


@dataclass(frozen=True)
class LoraStrategyConfig:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"
    # High for LoRA, because a bench run trains for tens of steps, not thousands.
    learning_rate: float = 1e-3
    epochs: int = 1
    max_steps: int | None = None  # a cap on optimizer steps over all epochs
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    eval_every: int = 10
    patience: int = 3
    max_train_examples: int | None = None
    max_val_examples: int = 64
    train_on_corpus: bool = False
    warmup_steps: int = 0
    weight_decay: float = 0.0
    predict_batch_size: int = 8
    packing: str | bool = "auto"  # auto: on CUDA
    gradient_checkpointing: bool = False  # less activation memory for ~30% more compute
    pad_to_max: bool = False  # bench perf's baseline: pad to max_length, LM head everywhere

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> BenchError:
            return BenchError(f"lora.{name} must be {want}, got {getattr(self, name)!r}")

        for name in _FLOATS:  # YAML reads 1e-3 (no dot) as a string
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    object.__setattr__(self, name, float(value))
                except ValueError:
                    raise bad(name, "a number") from None
        for name, low in {**_INTS, **_OPTIONAL_INTS}.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_INTS:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(name, f"an integer >= {low}")
        for name, low in _FLOATS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low or (value == low and name != "weight_decay"):
                raise bad(name, f"a finite number {'>=' if name == 'weight_decay' else '>'} {low}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise bad("dropout", "a number in [0, 1)")
        for name in ("train_on_corpus", "gradient_checkpointing", "pad_to_max"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "true or false")
        if self.packing not in ("auto", True, False):
            raise bad("packing", 'auto, true or false')
        targets = self.target_modules
        if isinstance(targets, (list, tuple)):
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise bad("target_modules", '"all-linear" or a non-empty list of module names')
            object.__setattr__(self, "target_modules", tuple(targets))
        elif not (isinstance(targets, str) and targets):
            raise bad("target_modules", '"all-linear" or a non-empty list of module names')


class LoraStrategy:
    name = "lora"

    def __init__(self, config: LoraStrategyConfig) -> None:
        self.config = config

    def prepare(self, task, model, budget: Budget) -> Artifacts:
        import torch
        from peft import LoraConfig, get_peft_model

        from strategies import lora_data as data

        cfg = self.config
        rng = random.Random(budget.seed)
        cap = min((c for c in (cfg.max_train_examples, budget.max_train_examples) if c is not None), default=None)
        train = list(task.train)
        if cap is not None and cap < len(train):
            train = rng.sample(train, cap)
        seqs = data.encode_examples(model, task, train, cfg.max_length)
        if cfg.train_on_corpus and task.corpus:
            seqs += data.encode_corpus(model, task.corpus, cfg.max_length)
        if not seqs:
            raise BenchError(f"lora: task {task.name!r} has no training examples")
        val = list(task.validation)
        if len(val) > cfg.max_val_examples:
            val = random.Random(f"{budget.seed}:val").sample(val, cfg.max_val_examples)
        val_seqs = data.encode_examples(model, task, val, cfg.max_length)

        torch.manual_seed(budget.seed)  # LoRA A init and dropout
        # A private copy: the shared handle serves the other strategies unchanged.
        peft_config = LoraConfig(task_type="CAUSAL_LM", r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                 target_modules=list(cfg.target_modules)
                                 if isinstance(cfg.target_modules, tuple) else cfg.target_modules)
        with _quiet_peft():
            peft_model = get_peft_model(copy.deepcopy(model.torch_model), peft_config)
        trainable, total = peft_model.get_nb_trainable_parameters()
        if cfg.gradient_checkpointing:  # non-reentrant: works with frozen inputs under PEFT
            base = peft_model.get_base_model()
            if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5 name
                base.activation_checkpointing_enable({"use_reentrant": False})
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        t0 = time.perf_counter()
        result = _train(peft_model, seqs, val_seqs, cfg, rng, model.device, model.pad_token_id,
                        budget.progress)
        train_seconds = time.perf_counter() - t0
        peft_model.eval()

        weights = _weights_sha256(peft_model)
        adapter_path = file_sha = None
        if budget.workdir is not None:
            folder = Path(budget.workdir) / "adapter"
            peft_model.save_pretrained(str(folder), safe_serialization=True)
            adapter_path = str(folder)
            file_sha = hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()
        adapted = model.with_adapter(peft_model, fingerprint=f"{model.fingerprint}:lora:{weights[:12]}")
        base_dtype = next(peft_model.get_base_model().parameters()).dtype
        info = {"trainable_params": trainable, "total_params": total, "train_examples": len(train),
                "val_examples": len(val), "train_seconds": round(train_seconds, 3), **result,
                "adapter_path": adapter_path, "adapter_sha256": file_sha, "weights_sha256": weights,
                "device": model.device, "gradient_checkpointing": cfg.gradient_checkpointing,
                "dtype": "bfloat16" if model.device.startswith("cuda") else str(base_dtype).removeprefix("torch.")}
        return Artifacts(self.name, model, task, state={"model": adapted}, info=info)

    def predict(self, artifacts: Artifacts, examples, progress=None) -> list[Prediction]:
        task, adapted = artifacts.task, artifacts.state["model"]
        prompts = [build_prompt(adapted, task, ex.input, reserve=reserve_tokens(task)) for ex in examples]
        return predict_prompts(adapted, task, examples, prompts, self.config.predict_batch_size, progress=progress)

    def latency_variants(self, artifacts: Artifacts):
        """The adapter merged into the weights: no extra LoRA matmuls per layer, one
        model per adapter. Merges this cell's private copy in place (runs last)."""
        adapted = artifacts.state["model"]
        merge = getattr(adapted.torch_model, "merge_and_unload", None)
        if merge is None:
            return
        with _quiet_peft():
            merged = adapted.with_adapter(merge(), fingerprint=f"{adapted.fingerprint}:merged")
        yield "merged", replace(artifacts, state={**artifacts.state, "model": merged})


def _train(peft_model, seqs, val_seqs, cfg: LoraStrategyConfig, rng: random.Random, device: str,
           pad_id: int, progress) -> dict[str, Any]:
    """AdamW with linear warmup and decay; keeps the best adapter by validation loss."""
    import torch

    from strategies import lora_data as data

    packed = cfg.packing is True or (cfg.packing == "auto" and device.startswith("cuda"))
    pad_to = cfg.max_length if cfg.pad_to_max and not packed else None

    def make_batch(items):
        return data.pack(items) if packed else data.collate(items, pad_id, pad_to)

    params = [p for p in peft_model.parameters() if p.requires_grad]
    per_epoch = math.ceil(math.ceil(len(seqs) / cfg.batch_size) / cfg.grad_accum)
    total = min(cfg.epochs * per_epoch, cfg.max_steps or cfg.epochs * per_epoch)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warm = cfg.warmup_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if s < warm
                                                 else max(0.0, (total - s) / max(1, total - warm)))
    # bf16 autocast on a GPU (the handle's weights are bf16 there); plain fp32 on CPU.
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.startswith("cuda") \
        else contextlib.nullcontext

    def evaluate() -> float:
        peft_model.eval()
        loss_sum, count = 0.0, 0
        with torch.no_grad(), autocast():
            for idx in data.length_batches(val_seqs, cfg.batch_size, None):
                loss, n = data.batch_loss(peft_model, data.collate([val_seqs[i] for i in idx], pad_id), device)
                loss_sum, count = loss_sum + float(loss), count + n
        peft_model.train()
        value = loss_sum / max(count, 1)
        if not math.isfinite(value):
            raise _diverged(value, step, cfg)
        return value

    def snapshot() -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}

    step, tokens, epochs_run, bad, stopped, train_loss = 0, 0, 0, 0, False, float("nan")
    step_seconds = 0.0  # optimizer steps only, without validation: what tokens/s is over
    split, oom_retries = 1, 0  # micro-batches per batch after CUDA out-of-memory errors
    curve: list[dict[str, Any]] = []
    best, best_state, best_step = math.inf, None, None
    if val_seqs:  # the untrained adapter is a candidate too: LoRA never ends worse on validation
        best, best_state, best_step = evaluate(), snapshot(), 0
        curve.append({"step": 0, "train_loss": None, "val_loss": round(best, 5)})
    peft_model.train()
    with phase(progress, "train lora", total) as bar:
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
                        loss_sum, seen = _accumulate(peft_model, group, n_total, device, autocast,
                                                     cfg.pad_to_max and not packed)
                        break
                    except torch.cuda.OutOfMemoryError:
                        if max(len(idx) for idx in batches[g:g + cfg.grad_accum]) <= split:
                            raise BenchError(f"lora: CUDA out of memory even at micro-batch 1 (step {step + 1}); "
                                             "lower max_length or use a smaller model") from None
                        split *= 2
                        oom_retries += 1
                        if torch.cuda.is_available():
                            torch.cuda.empty_cache()
                tokens += seen
                train_loss = loss_sum / n_total
                step += 1
                if not math.isfinite(train_loss):
                    raise _diverged(train_loss, step, cfg)
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
                        best, best_state, best_step, bad = val, snapshot(), step, 0
                    else:
                        bad += 1
                        stopped = bad >= cfg.patience and step < total
                if stopped or step >= total:
                    break
    if best_state is not None:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if name in best_state:
                    param.copy_(best_state[name])
    return {"steps": step, "epochs_run": epochs_run, "tokens_seen": tokens,
            "best_val_loss": None if best_state is None else round(best, 5), "best_step": best_step,
            "final_train_loss": round(train_loss, 5), "stopped_early": stopped, "loss_curve": curve,
            "oom_retries": oom_retries, "packing": packed, "train_step_seconds": round(step_seconds, 3),
            "tokens_per_s": round(tokens / step_seconds, 1) if step_seconds else None, "micro_batch_size": max(1, math.ceil(cfg.batch_size / split)),
            "grad_accum_used": cfg.grad_accum * split}


def _parts(idx: list[int], split: int) -> list[list[int]]:
    size = max(1, math.ceil(len(idx) / split))
    return [idx[s:s + size] for s in range(0, len(idx), size)]


def _accumulate(peft_model, group, n_total: int, device: str, autocast,
                all_logits: bool = False) -> tuple[float, int]:
    """Backward over the micro-batches of one step; the summed loss over them / their
    token count equals one big batch's, however the batch was cut."""
    from strategies import lora_data as data

    loss_sum, seen = 0.0, 0
    for batch in group:
        with autocast():
            loss, _ = data.batch_loss(peft_model, batch, device, all_logits)
        (loss / n_total).backward()
        loss_sum += loss.item()
        seen += int(batch["attention_mask"].sum())
    return loss_sum, seen


def _diverged(loss: float, step: int, cfg: LoraStrategyConfig) -> BenchError:
    return BenchError(f"LoRA training diverged (loss={loss} at step {step}); lower learning_rate "
                      f"(now {cfg.learning_rate:g}) or add warmup_steps")


def attach_adapter(model, adapter_dir: str | Path):
    """A handle over a copy of `model`'s weights with a saved adapter loaded (for reuse
    of a cached adapter without training)."""
    from peft import PeftModel

    with _quiet_peft():
        peft_model = PeftModel.from_pretrained(copy.deepcopy(model.torch_model), str(adapter_dir)).eval()
    return model.with_adapter(peft_model, fingerprint=f"{model.fingerprint}:lora:{_weights_sha256(peft_model)[:12]}")


@contextlib.contextmanager
def _quiet_peft():
    # peft 0.21 calls a transformers API deprecated in v5; the warning is not the user's to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def _weights_sha256(peft_model) -> str:
    h = hashlib.sha256()
    for name, param in sorted(peft_model.named_parameters()):
        if "lora_" in name:
            h.update(name.encode())
            h.update(param.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def build(options: Mapping[str, Any] | None = None) -> LoraStrategy:
    return LoraStrategy(config_from(LoraStrategyConfig, options or {}, "strategies.lora"))



"""`bench perf --gpu [--baseline]`: the bench's LoRA trainer on a GPU (bf16, SDPA or
FlashAttention, packed rows without cross-attention, optional gradient checkpointing)
against plain Hugging Face Trainer + PEFT on the same model, sequence length,
effective batch and steps; plus batch-1 decoding against the memory-bandwidth bound.

Arithmetic, stated once:
- MFU = tokens/s x 4N / peak bf16 FLOP/s. LoRA training costs ~4N FLOPs a token
  (forward 2N, backward through activations 2N; the frozen weights get no gradient).
- Decode bound = memory bandwidth / (N x bytes per weight): batch-1 decoding reads
  every weight once per token (2N bytes in bf16).
N counts every parameter of the base model. The tables are vendor datasheet figures
(dense, no sparsity); an unknown GPU gets no MFU rather than a guessed one.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from typing import Any

from bench.perf import CaseResult, environment, render_table, write_results

PEAK_BF16_FLOPS = {"H100 SXM": 989e12, "H100 PCIe": 756e12, "H200": 989e12, "A100": 312e12,
                   "L40S": 362e12, "L4": 121e12}
BANDWIDTH_BYTES = {"H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H200": 4.8e12, "A100 80GB": 2.039e12,
                   "A100": 1.555e12, "L40S": 0.864e12, "L4": 0.3e12}


def gpu_key(name: str, table: dict[str, float]) -> str | None:
    """The table row for a device name such as 'NVIDIA H100 80GB HBM3' (an SXM part)."""
    upper = name.upper()
    for key in sorted(table, key=len, reverse=True):  # 'A100 80GB' before 'A100'
        model, *variant = key.upper().split()
        if model not in upper:
            continue
        if variant and variant[0] == "SXM":
            if "PCIE" in upper:
                continue
        elif variant and variant[0] not in upper:
            continue
        return key
    return None


def mfu(tokens_per_s: float, n_params: int, peak_flops: float) -> float:
    return tokens_per_s * 4 * n_params / peak_flops


def decode_bound(n_params: int, bandwidth: float, bytes_per_param: int = 2) -> float:
    """Tokens/s of batch-1 decoding if only reading the weights took time."""
    return bandwidth / (bytes_per_param * n_params)


# -- the two trainers ------------------------------------------------------------
def train_sequences(handle: Any, n: int, max_length: int, task: Any = None):
    """Training and validation sequences from `task` (default the product-facts task, a
    seeded generator)."""
    from strategies.lora_data import encode_examples
    from tasks import load_task

    task = task if task is not None else load_task("product-facts", seed=0)
    task = dataclasses.replace(task, train=list(task.train[:n]))  # both trainers see exactly these
    return task, encode_examples(handle, task, task.train, max_length), \
        encode_examples(handle, task, task.validation[:16], max_length)


def _peak_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def bench_trainer(handle: Any, task: Any, steps: int, batch_size: int, grad_accum: int, max_length: int,
                  gradient_checkpointing: bool = False, **extra: Any) -> dict[str, Any]:
    """The bench's own LoRA path, through the strategy, as a run uses it."""
    from strategies.base import Budget
    from strategies.lora import build

    options = {"max_steps": steps, "batch_size": batch_size, "grad_accum": grad_accum, "max_length": max_length,
               "dropout": 0.0, "eval_every": 10**6, "max_val_examples": 0, "max_train_examples": steps * batch_size
               * grad_accum, "gradient_checkpointing": gradient_checkpointing, **extra}
    _peak_reset(handle.device)
    art = build(options).prepare(task, handle, Budget(seed=0))
    info = dict(art.info)
    info["peak_mb"] = _peak_mb(handle.device)
    info["model"] = art.state["model"].model
    return info


def hf_trainer(handle: Any, seqs: list, steps: int, batch_size: int, grad_accum: int, max_length: int,
               r: int = 8, alpha: float = 16.0, lr: float = 1e-3, dynamic: bool = False,
               bf16: bool | None = None, sequential: bool = False) -> dict[str, Any]:
    """Plain Hugging Face Trainer + PEFT: every sequence padded to max_length (right
    padding, as tokenizers pad by default), loss on answer tokens, the default collator;
    `dynamic`: each batch padded to its longest sequence (DataCollatorForSeq2Seq);
    `bf16`: Trainer's own `bf16=True` (bf16 autocast, fp32 weights; default: on CUDA);
    `sequential`: batches in `seqs`' order instead of Trainer's shuffled default."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, default_data_collator

    from bench.backends.shared_adapters import clean_copy
    from strategies.training import quiet_peft as _quiet_peft

    pad = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None else 0
    rows = []
    for seq in seqs[: steps * batch_size * grad_accum]:
        ids = list(seq.ids) + [pad] * (max_length - len(seq.ids))
        labels = [-100] * (len(seq.ids) - seq.n_labels) + list(seq.ids[-seq.n_labels:]) + [-100] * (max_length - len(seq.ids))
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(seq.ids) + [0] * (max_length - len(seq.ids))})
        if dynamic:
            rows[-1] = {k: v[: len(seq.ids)] for k, v in rows[-1].items()}
    torch.manual_seed(0)
    with _quiet_peft():
        model = get_peft_model(clean_copy(handle.model), LoraConfig(
            task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear"))
    cuda = handle.device.startswith("cuda")
    bf16 = cuda if bf16 is None else bf16
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="hf-baseline-"), per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=grad_accum, max_steps=steps, learning_rate=lr,
                             lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, bf16=bf16,
                             use_cpu=not cuda, logging_steps=1, save_strategy="no", report_to=[],
                             dataloader_num_workers=0, seed=0, disable_tqdm=True,
                             train_sampling_strategy="sequential" if sequential else "random")
    collator = DataCollatorForSeq2Seq(handle.tokenizer, padding=True, label_pad_token_id=-100) if dynamic \
        else default_data_collator
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator)
    _peak_reset(handle.device)
    t0 = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - t0
    tokens = sum(sum(row["attention_mask"]) for row in rows)
    return {"tokens_seen": tokens, "train_step_seconds": seconds, "tokens_per_s": tokens / seconds,
            "final_train_loss": out.training_loss, "peak_mb": _peak_mb(handle.device), "model": model,
            "bf16": bf16, "step_losses": [e["loss"] for e in trainer.state.log_history if "loss" in e]}


def eval_loss(model: Any, seqs: list, device: str) -> float:
    """Mean loss per answer token, the same function for both trainers' adapters."""
    import torch

    from strategies import lora_data as data

    total, count = 0.0, 0
    model.eval()
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.no_grad()
    with torch.no_grad(), ctx:
        for idx in data.length_batches(seqs, 8, None):
            loss, n = data.batch_loss(model, data.collate([seqs[i] for i in idx], 0), device)
            total, count = total + float(loss), count + n
    return total / max(count, 1)


def decode_tokens_per_s(handle: Any, new_tokens: int = 128) -> float:
    import torch

    ids = torch.tensor([handle.encode(handle.render("Write a long story about a lighthouse."))], device=handle.device)
    kwargs = dict(do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                  pad_token_id=handle.tokenizer.pad_token_id)
    with torch.inference_mode():
        handle.model.generate(input_ids=ids, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
        if handle.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        handle.model.generate(input_ids=ids, **kwargs)
        if handle.device.startswith("cuda"):
            torch.cuda.synchronize()
    return new_tokens / (time.perf_counter() - t0)


# -- the suite ----------------------------------------------------------------------
def compare(bench: dict, hf: dict | None, val: tuple[float, float | None], n_params: int, gpu: str,
            decode: float, bytes_per_param: int) -> list[CaseResult]:
    """The table rows from the measurements (pure, so the arithmetic is testable)."""
    peak = PEAK_BF16_FLOPS.get(gpu_key(gpu, PEAK_BF16_FLOPS) or "")
    bandwidth = BANDWIDTH_BYTES.get(gpu_key(gpu, BANDWIDTH_BYTES) or "")
    rows = []
    if hf is not None:
        ratio = bench["tokens_per_s"] / hf["tokens_per_s"]
        gap = abs(val[0] - val[1]) / abs(val[1]) if val[1] else math.inf
        rows.append(CaseResult("gpu training", "tokens/s ratio", ratio, ">= 1.5x", ratio >= 1.5 and gap <= 0.01,
                               agree=f"val loss {val[0]:.4f} vs HF {val[1]:.4f} ({gap:.2%})",
                               baseline=f"HF {hf['tokens_per_s']:,.0f} tok/s", optimised=f"{bench['tokens_per_s']:,.0f} tok/s"))
        if bench.get("peak_mb") and hf.get("peak_mb"):
            mem = bench["peak_mb"] / hf["peak_mb"]
            rows.append(CaseResult("gpu peak memory", "of HF's", mem, "<= 0.7x", mem <= 0.7,
                                   baseline=f"HF {hf['peak_mb']:,.0f} MB", optimised=f"{bench['peak_mb']:,.0f} MB"))
    for label, run in (("bench", bench), ("HF", hf)):
        if run is not None:
            value = mfu(run["tokens_per_s"], n_params, peak) if peak else None
            rows.append(CaseResult(f"MFU ({label})", "of peak bf16", value, "report", None, fmt="%",
                                   optimised=f"{run['tokens_per_s']:,.0f} tok/s",
                                   note="" if peak else f"no peak FLOP/s known for {gpu!r}"))
    bound = decode_bound(n_params, bandwidth, bytes_per_param) if bandwidth else None
    rows.append(CaseResult("decode batch-1", "of bandwidth bound", decode / bound if bound else None, "report", None,
                           fmt="%", baseline=f"bound {bound:,.0f} tok/s" if bound else "bound n/a",
                           optimised=f"{decode:,.1f} tok/s"))
    return rows


def build_handle(spec: str, device: str):
    """A model spec, or `random-llama-0.5b`: a randomly initialised 0.5B Llama with the
    embedded tokenizer, built in-process (throughput does not depend on the weights)."""
    from bench.backends.hf import load_hf

    if spec != "random-llama-0.5b":
        return load_hf(spec, device=device, log=lambda *a, **k: None)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.models import attention_implementation

    small = load_hf("smollm2-135m", device="cpu", log=lambda *a, **k: None)
    config = LlamaConfig(vocab_size=len(small.tokenizer), hidden_size=1024, intermediate_size=4096,
                         num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
                         max_position_embeddings=2048, tie_word_embeddings=True)
    config._attn_implementation = attention_implementation(device)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device, torch.bfloat16 if device.startswith("cuda") else torch.float32)
    return dataclasses.replace(small, model=model.eval(), name=spec, device=device, fingerprint=spec)


def run_gpu_suite(spec: str, device: str = "cuda", baseline: bool = False, quick: bool = False,
                  console: Any = None, out: str | None = None, steps: int | None = None) -> list[CaseResult]:
    from bench.models import resolve_device

    device = resolve_device(device)
    handle = build_handle(spec, device)
    steps, batch, accum, length = steps or (2 if quick else 30), 4 if quick else 16, 1, 256
    task, seqs, val_seqs = train_sequences(handle, steps * batch * accum, length)
    bench = bench_trainer(handle, task, steps, batch, accum, length)
    val_bench = eval_loss(bench.pop("model"), val_seqs, device)
    hf = val_hf = None
    if baseline:
        hf = hf_trainer(handle, seqs, steps, batch, accum, length)
        val_hf = eval_loss(hf.pop("model"), val_seqs, device)
    n_params = sum(p.numel() for p in handle.model.parameters())
    bytes_per = next(handle.model.parameters()).element_size()
    env = environment()
    gpu = env.get("gpu") or "cpu"
    decode = decode_tokens_per_s(handle, 16 if quick else 128)
    results = compare(bench, hf, (val_bench, val_hf), n_params, gpu, decode, bytes_per)
    for r in results:
        r.details.update(model=spec, n_params=n_params, device=device, steps=steps, batch=batch, max_length=length,
                         packing=bench.get("packing"), attention=handle.extra.get("attention"))
    render_table(results, title=f"bench perf --gpu: {spec} ({n_params / 1e6:.0f}M) on {gpu}", console=console)
    if out is not None:
        write_results(results, out, {**env, "suite": "gpu", "bench": _plain(bench), "hf": _plain(hf)})
    return results


def _plain(run: dict | None) -> dict | None:
    return None if run is None else {k: v for k, v in run.items() if k != "loss_curve" and not hasattr(v, "parameters")}

"""fp32 linear layers through oneDNN while the hf backend generates or scores on a CPU.

PyTorch runs an fp32 `nn.Linear` on x86 through MKL's sgemm; oneDNN's matmul (what
vLLM's CPU backend and torch.compile's CPU kernels call) was 1.2-1.5x faster on this
project's AMD EPYC for the shapes a prefill runs (3,888 x 576 x 1,536 and the like,
2 threads), with results equal to rounding (max |diff| ~2e-4 on sums of 576 products).
bf16 already goes to oneDNN in PyTorch, so only fp32 weights are switched.

Only inside `linears(model)`, only with autograd off (training keeps `F.linear` and its
backward), only for layers of at least 64 inputs and outputs (a LoRA adapter's rank-8
matrices stay on the default path), and only after a self-check on this machine passes;
on exit every layer is exactly as before. The dense weight is passed as it is: oneDNN's
pre-packed layout would be faster still at batch 16 decode, but costs a second copy of
every weight.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

import torch
import torch.nn.functional as F

MIN_FEATURES = 64
_checked: bool | None = None


def _op():
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None) if hasattr(torch.ops, "mkldnn") else None


def available() -> bool:
    """oneDNN's linear exists here and gives F.linear's result on this machine (checked once)."""
    global _checked
    if _checked is None:
        _checked = False
        op = _op()
        if op is not None and torch.backends.mkldnn.is_available():
            try:
                gen = torch.Generator().manual_seed(0)
                x = torch.randn(3, 5, 96, generator=gen)
                w, b = torch.randn(80, 96, generator=gen), torch.randn(80, generator=gen)
                with torch.inference_mode():
                    got = op(x, w, b, "none", [], "")
                _checked = got.shape == (3, 5, 80) and torch.allclose(got, F.linear(x, w, b), rtol=1e-4, atol=1e-4)
            except (RuntimeError, TypeError):
                _checked = False
    return _checked


def _forward(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu":
        return F.linear(x, layer.weight, layer.bias)
    return _op()(x, layer.weight, layer.bias, "none", [], "")


def _eligible(module: Any) -> bool:
    weight = getattr(module, "weight", None)
    return type(module) is torch.nn.Linear and weight is not None and weight.dtype == torch.float32 \
        and weight.device.type == "cpu" and module.in_features >= MIN_FEATURES \
        and module.out_features >= MIN_FEATURES and "forward" not in vars(module)


@contextlib.contextmanager
def linears(model: Any, enabled: bool = True) -> Iterator[int]:
    """Inside, `model`'s large fp32 CPU linear layers run through oneDNN when autograd is
    off; yields how many were switched (0 when disabled, on CUDA, or where unavailable)."""
    layers = [m for m in model.modules() if _eligible(m)] if enabled and isinstance(model, torch.nn.Module) \
        else []
    if layers and not available():
        layers = []
    for layer in layers:
        layer.forward = functools.partial(_forward, layer)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            vars(layer).pop("forward", None)

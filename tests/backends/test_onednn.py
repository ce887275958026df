"""fp32 linears through oneDNN while the hf backend generates or scores (bench/backends/onednn.py)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.backends import onednn
from tests.fakes import tiny_handle

pytestmark = pytest.mark.skipif(not onednn.available(), reason="oneDNN's linear is not in this torch build")


def _count_calls(monkeypatch) -> list[int]:
    calls = [0]
    real = onednn._op()

    def counted(*args):
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(onednn, "_op", lambda: counted)
    return calls


def test_switches_only_large_fp32_layers_and_restores_them():
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8), torch.nn.Linear(8, 64),
                                torch.nn.Linear(96, 80).to(torch.bfloat16))
    with onednn.linears(model) as switched:
        assert switched == 1  # rank-8 matrices (a LoRA adapter's) and bf16 weights stay as they are
        assert "forward" in vars(model[0]) and "forward" not in vars(model[1])
    assert not any("forward" in vars(m) for m in model)
    with onednn.linears(model, enabled=False) as switched:
        assert switched == 0


def test_inference_output_equals_f_linear_and_autograd_keeps_the_default(monkeypatch):
    calls = _count_calls(monkeypatch)
    layer = torch.nn.Linear(96, 80)
    x = torch.randn(2, 7, 96)
    with torch.inference_mode():
        want = torch.nn.functional.linear(x, layer.weight, layer.bias)
    with onednn.linears(layer):
        with torch.inference_mode():
            got = layer(x)
        assert calls[0] == 1 and torch.allclose(got, want, rtol=1e-4, atol=1e-4)
        y = layer(x.requires_grad_())  # training: F.linear, and its backward
        y.sum().backward()
    assert calls[0] == 1 and layer.weight.grad is not None


def test_generate_and_score_agree_with_the_default_path(monkeypatch):
    monkeypatch.setattr(onednn, "MIN_FEATURES", 16)  # the tiny model's layers are 16-64 wide
    calls = _count_calls(monkeypatch)
    on = tiny_handle()
    off = dataclasses.replace(on, onednn_linear=False)
    prompts = [on.render(f"Question {i}: what is {i} plus {i}?") for i in range(6)]
    ref_gen = off.generate(prompts, max_new_tokens=8, batch_size=4)
    ref_scores = off.score_choices(prompts, ["yes", "no"], batch_size=4)
    assert calls[0] == 0
    gen = on.generate(prompts, max_new_tokens=8, batch_size=4)
    scores = on.score_choices(prompts, ["yes", "no"], batch_size=4)
    assert calls[0] > 0
    assert [g.text for g in gen] == [g.text for g in ref_gen]
    for a, b in zip(scores, ref_scores):
        assert a.best == b.best and max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-4
    assert not any("forward" in vars(m) for m in on.model.modules())

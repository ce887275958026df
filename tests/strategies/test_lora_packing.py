"""The GPU data path, checked on CPU: packed rows equal separate sequences (no
cross-contamination), the padded baseline equals the dynamic path, and packing and
gradient checkpointing change throughput only, never the loss."""
import dataclasses

import pytest
import torch

from bench.errors import BenchError
from fakes import toy_qa
from strategies import lora_data
from strategies.base import Budget
from strategies.lora import LoraStrategyConfig, build


@pytest.fixture
def seqs(tiny):
    task = toy_qa()
    return lora_data.encode_examples(tiny, task, task.train, max_length=256)


def test_packed_row_equals_sequences_one_by_one(tiny, seqs):
    with torch.no_grad():
        alone = [lora_data.batch_loss(tiny.model, lora_data.collate([s], 0), "cpu") for s in seqs]
        packed, n = lora_data.batch_loss(tiny.model, lora_data.pack(seqs), "cpu")
        # The same row with positions running on (no reset) lets later sequences attend to
        # earlier ones: the loss must change, or the test above would prove nothing.
        leaky = lora_data.pack(seqs)
        leaky["position_ids"] = torch.arange(leaky["input_ids"].shape[1])[None]
        contaminated, _ = lora_data.batch_loss(tiny.model, leaky, "cpu")
    assert lora_data.pack(seqs)["input_ids"].shape[0] == 1
    assert n == sum(k for _, k in alone)
    # The random tiny model attends almost uniformly, so the leak is small but far
    # above float noise: ~7e-3 against agreement to ~1e-5.
    assert abs(float(packed) - sum(float(x) for x, _ in alone)) < 2e-4
    assert abs(float(contaminated) - float(packed)) > 2e-3


def test_packed_gradients_equal_padded_gradients(tiny, seqs):
    grads = []
    for batch in (lora_data.pack(seqs), lora_data.collate(seqs, 0)):
        tiny.model.zero_grad(set_to_none=True)
        loss, _ = lora_data.batch_loss(tiny.model, batch, "cpu")
        loss.backward()
        grads.append(tiny.model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    tiny.model.zero_grad(set_to_none=True)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_padded_baseline_with_full_logits_equals_the_dynamic_path(tiny, seqs):
    with torch.no_grad():
        dynamic, n1 = lora_data.batch_loss(tiny.model, lora_data.collate(seqs, 0), "cpu")
        padded, n2 = lora_data.batch_loss(tiny.model, lora_data.collate(seqs, 0, pad_to=200), "cpu", all_logits=True)
    assert lora_data.collate(seqs, 0, pad_to=200)["input_ids"].shape[1] == 200
    assert n1 == n2 and float(dynamic) == pytest.approx(float(padded), rel=1e-5)


FAST = {"learning_rate": 0.05, "batch_size": 2, "eval_every": 2, "max_steps": 2, "dropout": 0.0, "patience": 100}


def _train(tiny, **options):
    return build({**FAST, **options}).prepare(toy_qa(), tiny, Budget(seed=0)).info


@pytest.mark.parametrize("variant", [{"packing": True}, {"gradient_checkpointing": True}, {"pad_to_max": True}])
def test_data_path_variants_train_to_the_same_losses(tiny, variant):
    plain, other = _train(tiny, packing=False), _train(tiny, **variant)
    assert other["steps"] == plain["steps"] == 2 and other["tokens_seen"] == plain["tokens_seen"]
    assert other["packing"] is bool(variant.get("packing"))
    for a, b in zip(plain["loss_curve"], other["loss_curve"]):
        for key in ("train_loss", "val_loss"):
            if a[key] is not None:
                assert b[key] == pytest.approx(a[key], rel=1e-3)
    assert plain["tokens_per_s"] > 0 and plain["train_step_seconds"] > 0


def test_packing_is_automatic_on_cuda_only(tiny):
    assert _train(tiny)["packing"] is False  # auto on a CPU handle


def test_data_path_options_are_checked():
    with pytest.raises(BenchError, match="packing"):
        LoraStrategyConfig(packing="yes")
    with pytest.raises(BenchError, match="gradient_checkpointing"):
        LoraStrategyConfig(gradient_checkpointing=1)
    assert dataclasses.replace(LoraStrategyConfig(), packing=True).packing is True

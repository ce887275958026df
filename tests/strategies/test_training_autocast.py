"""The training option `autocast` (bf16 matmuls over fp32 weights where bf16 is native) and
AdamW's fused kernel: how `auto` resolves, the config check, that bf16 training lands on
the fp32 loss within a tolerance and is recorded, and that its adapter reloads. Tiny model."""
import pytest
import torch

from bench.errors import BenchError
from fakes import toy_classification
from strategies.base import Budget
from strategies.lora import STRATEGY, build
from strategies.train_loop import autocast_dtype, fused_adamw

FAST = {"learning_rate": 0.05, "batch_size": 4, "eval_every": 2, "patience": 100, "dropout": 0.0,
        "max_steps": 6, "forgetting": False}


@pytest.mark.parametrize("setting, device, native, want", [
    ("off", "cuda", True, None),
    ("bf16", "cpu", False, "bfloat16"),  # asked for: taken even where bf16 is emulated
    ("auto", "cuda:0", None, "bfloat16"),
    ("auto", "cpu", True, "bfloat16"),
    ("auto", "cpu", False, None),
    ("auto", "mps", True, None),  # the CPU's flags say nothing about another device
])
def test_auto_is_bf16_only_where_it_is_native(setting, device, native, want):
    dtype, why = autocast_dtype(setting, device, native=native)
    assert dtype == want and why.startswith(setting)


@pytest.mark.parametrize("value", ["fp16", "on", True, 1])
def test_a_bad_autocast_is_an_error_naming_the_field(value):
    with pytest.raises(BenchError, match=r"lora\.autocast must be auto, bf16 or off"):
        build({"autocast": value})


def test_yaml_off_reads_as_off():
    assert build({"autocast": False}).config.autocast == "off"  # YAML 1.1: a bare `off` is false


def test_fused_adamw_where_every_parameter_is_a_float_tensor():
    assert fused_adamw([torch.nn.Parameter(torch.zeros(3))]) == {"fused": True}
    assert fused_adamw([]) == {}


def test_fused_adamw_takes_the_same_steps_as_the_loop():
    torch.manual_seed(0)
    start = [torch.randn(8, 5), torch.randn(5, 8)]
    grads = [[torch.randn_like(t) * 1e-3 for t in start] for _ in range(4)]
    finals = []
    for kw in ({"foreach": False}, fused_adamw(start)):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01, **kw)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
        finals.append(params)
    for a, b in zip(*finals):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.equal(finals[0][0], start[0])  # the steps moved the weights


def train(handle, tmp_path, **options):
    strategy = build({**FAST, **options})
    return strategy.prepare(toy_classification(), handle, Budget(seed=0, workdir=tmp_path))


def test_bf16_training_lands_on_the_fp32_loss_and_is_recorded(tiny, tmp_path):
    fp32 = train(tiny, tmp_path / "fp32", autocast="off")
    bf16 = train(tiny, tmp_path / "bf16", autocast="bf16")
    assert fp32.info["autocast"] is None and bf16.info["autocast"] == "bfloat16"
    assert bf16.info["autocast_why"] == "bf16: asked for"
    # bf16 rounding really ran: the same seed and batches give other weights...
    assert fp32.info["weights_sha256"] != bf16.info["weights_sha256"]
    # ...and the same validation losses within a few percent, after training moved them.
    curves = [[c["val_loss"] for c in art.info["loss_curve"] if c["val_loss"] is not None] for art in (fp32, bf16)]
    assert curves[0][-1] < curves[0][0]
    for a, b in zip(*curves):
        assert b == pytest.approx(a, rel=0.05)
    # Mixed precision: the trained weights stay fp32.
    assert all(p.dtype == torch.float32 for p in bf16.state["trained"].torch_model.parameters())


def test_a_bf16_trained_adapter_saves_and_reloads_bit_identical(tiny, tmp_path):
    art = train(tiny, tmp_path / "cell", autocast="bf16")
    facts = STRATEGY.artifacts.save(art, tmp_path / "saved")
    again = STRATEGY.artifacts.load(tmp_path / "saved", art.task, tiny, facts)
    assert again.state["model"].fingerprint == art.state["model"].fingerprint
    task = art.task
    first = build(FAST).predict(art, task.test)
    second = build(FAST).predict(again, task.test)
    assert [p.output for p in first] == [p.output for p in second]

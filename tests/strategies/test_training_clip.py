"""The training option `max_grad_norm`: the global gradient norm is clipped before every
optimizer step (Trainer's default of 1.0), 0 turns it off, a negative value is an error."""
import pytest
import torch

from bench.errors import BenchError
from fakes import toy_classification
from strategies.base import Budget
from strategies.lora import build

FAST = {"learning_rate": 0.05, "batch_size": 4, "eval_every": 100, "patience": 100, "dropout": 0.0,
        "max_steps": 3, "forgetting": False, "max_val_examples": 0}


def _record_clips(monkeypatch) -> list[tuple[float, float]]:
    """(max_norm, the gradients' norm after clipping) per call."""
    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, **kw):
        params = list(params)
        out = real(params, max_norm, **kw)
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        seen.append((max_norm, float(after)))
        return out

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    return seen


def test_every_step_is_clipped_to_the_norm(tiny, tmp_path, monkeypatch):
    seen = _record_clips(monkeypatch)
    art = build({**FAST, "max_grad_norm": 0.01}).prepare(toy_classification(), tiny, Budget(seed=0, workdir=tmp_path))
    assert art.info["steps"] >= 2 and len(seen) == art.info["steps"] and all(m == 0.01 and after <= 0.01 * 1.001 for m, after in seen)


def test_zero_turns_clipping_off_and_the_default_is_trainers(tiny, tmp_path, monkeypatch):
    seen = _record_clips(monkeypatch)
    build({**FAST, "max_grad_norm": 0}).prepare(toy_classification(), tiny, Budget(seed=0, workdir=tmp_path))
    assert seen == []
    assert build({}).config.max_grad_norm == 1.0


@pytest.mark.parametrize("value", [-1, "big", float("nan")])
def test_a_bad_max_grad_norm_is_an_error_naming_the_field(value):
    with pytest.raises(BenchError, match=r"lora\.max_grad_norm must be a (finite number >= 0|number)"):
        build({"max_grad_norm": value})

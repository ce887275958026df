"""Full fine-tuning: every weight trains (the baseline the PEFT methods save against).

- It needs its own copy of all the weights, plus AdamW's two moments and the best-so-far
  snapshot: about 4-5x the model's size in memory while it trains (freed with the
  cell's artifacts), and a full checkpoint on disk (`saved_bytes`).
- On a GPU the copy trains in float32 under bf16 autocast: a 2e-5 step is below
  bfloat16's resolution for most weights, so bf16 master weights would barely move.
- Its learning rate default (5e-5) is far below LoRA's: all weights move, and a bench
  run has tens of steps, not thousands. `gradient_checkpointing: true` trades ~30%
  more compute for much less activation memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from bench.errors import BenchError
from bench.options import config_from
from strategies import training, training_config
from strategies.base import StrategyDef


@dataclass(frozen=True)
class FullFTConfig(training_config.TrainingConfig):
    PREFIX: ClassVar[str] = "full-ft"
    learning_rate: float = 5e-5


def private_copy(lm: Any) -> Any:
    """The one strategy that needs its own copy: it changes every weight. Without the
    adapters other cells attached to the shared model; freed with the artifacts."""
    from bench.backends.shared_adapters import clean_copy

    model = clean_copy(lm.torch_model)
    return model.float() if str(lm.device).startswith("cuda") else model


def wrap(model: Any, cfg: Any, task: Any, lm: Any) -> Any:
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def save(model: Any, folder: Path) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)


def reload(model: Any, folder: Path) -> Any:
    from safetensors.torch import load_file

    state: dict = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        state.update(load_file(str(path), device=str(next(model.parameters()).device)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if "lm_head" in k and getattr(model.config, "tie_word_embeddings", False)}
    if unexpected or set(missing) - tied:
        raise BenchError(f"full-ft: checkpoint {folder} does not fit the model (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]})")
    return model.eval()


METHOD = training.Method("full-ft", wrap, reload, save, state=lambda model: model.state_dict(),
                         copy_base=private_copy,
                         dtype=lambda model, device: "float32" + (" (bf16 autocast)" if device.startswith("cuda")
                                                                  else ""))


def build(options: Mapping[str, Any] | None = None) -> training.TrainedStrategy:
    return training.TrainedStrategy("full-ft", METHOD, config_from(FullFTConfig, options or {},
                                                                   "strategies.full-ft"))


STRATEGY = StrategyDef(
    name="full-ft", config=FullFTConfig, build=build, predict_batch="predict_batch_size",
    code=("strategies.full_ft", *training.CODE), artifacts=training.WeightsStore("full-ft", METHOD),
    needs=frozenset({"trainable"}), resources=training.RESOURCES, changes_weights=True, learns_from_train=True)

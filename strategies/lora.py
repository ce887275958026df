"""LoRA fine-tuning: trainable low-rank matrices beside the frozen weights (PEFT), then
the same zero-shot prompt `prompting` uses, so the only difference is the weights.

Training, saving and the facts every cell records are the shared path in
`strategies/training.py`; this module says only what LoRA is. `dora` is the same
config with `use_dora` (strategies/dora.py), `qlora` the same over a 4-bit base.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from bench.options import config_from
from strategies import training, training_config
from strategies.base import StrategyDef

@dataclass(frozen=True)
class LoraStrategyConfig(training_config.TrainingConfig):
    PREFIX: ClassVar[str] = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"

    def __post_init__(self) -> None:
        check_lora(self)


def check_lora(cfg: Any) -> None:
    training_config.check_training(cfg, ints={"r": 1}, floats={"alpha": 0.0})
    if isinstance(cfg.dropout, bool) or not isinstance(cfg.dropout, (int, float)) or not 0 <= cfg.dropout < 1:
        raise training_config.bad(cfg, "dropout", "a number in [0, 1)")
    training_config.check_targets(cfg)


def lora_config(cfg: Any, task: Any = None, lm: Any = None, **extra: Any):
    from peft import LoraConfig

    targets = list(cfg.target_modules) if isinstance(cfg.target_modules, tuple) else cfg.target_modules
    return LoraConfig(task_type="CAUSAL_LM", r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=targets, **extra)


METHOD = training.peft_method("lora", lora_config, servable=True)


def build(options: Mapping[str, Any] | None = None) -> training.TrainedStrategy:
    return training.TrainedStrategy("lora", METHOD, config_from(LoraStrategyConfig, options or {},
                                                                "strategies.lora"))


STRATEGY = StrategyDef(
    name="lora", config=LoraStrategyConfig, build=build, predict_batch="predict_batch_size",
    code=("strategies.lora", *training.CODE), artifacts=training.WeightsStore("lora", METHOD),
    needs=frozenset({"trainable"}), resources=training.RESOURCES, changes_weights=True, learns_from_train=True)

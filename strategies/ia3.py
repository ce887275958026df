"""IA3: learned vectors that rescale keys, values and the feed-forward activations
(PEFT `IA3Config`), initialised to ones so training starts from the base model. Far
fewer trainable parameters than LoRA; it needs a higher learning rate (the T-Few
paper used 3e-3 for thousands of steps; a bench run has tens, so 1e-2).
`target_modules` / `feedforward_modules` default to PEFT's table for the architecture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from bench.options import config_from
from strategies import training, training_config
from strategies.base import StrategyDef


@dataclass(frozen=True)
class IA3Config(training_config.TrainingConfig):
    PREFIX: ClassVar[str] = "ia3"
    learning_rate: float = 1e-2
    target_modules: tuple[str, ...] | None = None  # None: PEFT's default for the model type
    feedforward_modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        training_config.check_training(self)
        for name in ("target_modules", "feedforward_modules"):
            if getattr(self, name) is not None:
                training_config.check_targets(self, name)


def ia3_config(cfg: IA3Config, task: Any = None, lm: Any = None):
    from peft import IA3Config as PeftIA3Config

    return PeftIA3Config(task_type="CAUSAL_LM",
                         target_modules=list(cfg.target_modules) if cfg.target_modules else None,
                         feedforward_modules=list(cfg.feedforward_modules) if cfg.feedforward_modules else None)


METHOD = training.peft_method("ia3", ia3_config)


def build(options: Mapping[str, Any] | None = None) -> training.TrainedStrategy:
    return training.TrainedStrategy("ia3", METHOD, config_from(IA3Config, options or {}, "strategies.ia3"))


STRATEGY = StrategyDef(
    name="ia3", config=IA3Config, build=build, predict_batch="predict_batch_size",
    code=("strategies.ia3", *training.CODE), artifacts=training.WeightsStore("ia3", METHOD),
    needs=frozenset({"trainable"}), resources=training.RESOURCES, changes_weights=True, learns_from_train=True)

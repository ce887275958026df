"""DoRA (weight-decomposed LoRA): each adapted weight is split into a magnitude vector
and a direction, and LoRA trains the direction (PEFT `LoraConfig(use_dora=True)`).
Often closer to full fine-tuning than LoRA at the same rank, for a slower step. Same
options and defaults as `lora`; the shared training path is `strategies/training.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from bench.options import config_from
from strategies import training
from strategies.base import StrategyDef
from strategies.lora import LoraStrategyConfig, lora_config


@dataclass(frozen=True)
class DoraConfig(LoraStrategyConfig):
    PREFIX: ClassVar[str] = "dora"


METHOD = training.peft_method("dora", lambda cfg, task, lm: lora_config(cfg, use_dora=True))


def build(options: Mapping[str, Any] | None = None) -> training.TrainedStrategy:
    return training.TrainedStrategy("dora", METHOD, config_from(DoraConfig, options or {}, "strategies.dora"))


STRATEGY = StrategyDef(
    name="dora", config=DoraConfig, build=build, predict_batch="predict_batch_size",
    code=("strategies.dora", "strategies.lora", *training.CODE), artifacts=training.WeightsStore("dora", METHOD),
    needs=frozenset({"trainable"}), resources=training.RESOURCES, changes_weights=True, learns_from_train=True)

"""Prompt engineering: zero-shot or k-shot, no training and no retrieval.

The k demonstrations are drawn from the train split (its first `train_limit` examples
in one seeded order, `labelled_subset`) with the run's seed, once in `prepare`, so every test example sees the same ones (balanced across labels for
classification, so the prompt does not teach a majority label)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from bench.errors import BenchError
from bench.options import config_from
from strategies.base import Artifacts, Budget, Prediction, StrategyDef
from strategies.prompts import build_prompt, labelled_subset, pick_demos, predict_prompts, reserve_tokens


@dataclass(frozen=True)
class PromptingConfig:
    shots: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.shots < 0:
            raise BenchError(f"prompting.shots must be >= 0, got {self.shots}")
        if self.batch_size < 1:
            raise BenchError(f"prompting.batch_size must be >= 1, got {self.batch_size}")


class PromptingStrategy:
    def __init__(self, config: PromptingConfig) -> None:
        self.config = config
        self.name = "prompting" if config.shots == 0 else f"prompting-{config.shots}shot"

    def prepare(self, task, model, budget: Budget) -> Artifacts:
        train = labelled_subset(task.train, budget.max_train_examples, budget.seed)
        demos = pick_demos(train, self.config.shots, budget.seed,
                           task.labels if task.kind == "classification" else ())
        return Artifacts(self.name, model, task, state={"demos": demos},
                         info={"shots": len(demos), "demo_ids": [d.id for d in demos]})

    def predict(self, artifacts: Artifacts, examples, progress=None) -> list[Prediction]:
        task, model = artifacts.task, artifacts.model
        demos = artifacts.state["demos"]
        prompts = [build_prompt(model, task, ex.input, demos, reserve=reserve_tokens(task)) for ex in examples]
        return predict_prompts(model, task, examples, prompts, self.config.batch_size, progress=progress)


def build(options: Mapping[str, Any] | None = None) -> PromptingStrategy:
    return PromptingStrategy(config_from(PromptingConfig, options or {}, "strategies.prompting"))


def _learns(config: PromptingConfig) -> bool:
    return config.shots > 0  # zero-shot never looks at the train split


STRATEGY = StrategyDef(name="prompting", config=PromptingConfig, build=build, predict_batch="batch_size",
                       code=("strategies.prompting", "strategies.prompts"), learns_from_train=_learns)

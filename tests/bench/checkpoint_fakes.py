"""A fake strategy whose prepared artifacts are saved (its StrategyDef has an
ArtifactStore), for the resume tests: it logs every prepare, load and predict call,
and a predict pass (more than one example) of the entry named in KILL dies the way a
SIGKILL would (a BaseException: no handler records the cell)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from bench.options import config_from
from strategies.base import Artifacts, Prediction, StrategyDef

LOG: dict[str, list] = {"prepare": [], "load": [], "predict": []}
KILL: dict[str, Any] = {"salt": None}


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


def reset() -> None:
    for calls in LOG.values():
        calls.clear()
    KILL["salt"] = None


@dataclass(frozen=True)
class SaverConfig:
    salt: int = 0  # tells the entries of one grid apart (and changes their answers)
    batch_size: int = 4


class Saver:
    def __init__(self, config: SaverConfig) -> None:
        self.config = config
        self.name = "saver"

    def prepare(self, task, model, budget) -> Artifacts:
        LOG["prepare"].append(self.config.salt)
        weight = self.config.salt * 7 + budget.seed
        return Artifacts("saver", model, task, state={"weight": weight}, info={"weight": weight, "trained": True})

    def predict(self, artifacts: Artifacts, examples, progress=None) -> list[Prediction]:
        if KILL["salt"] == self.config.salt and len(examples) > 1:
            raise Killed
        LOG["predict"].append((self.config.salt, [ex.id for ex in examples]))
        labels = artifacts.task.labels
        weight = artifacts.state["weight"]
        out = [Prediction(ex.id, labels[(weight + int(ex.id[1:])) % len(labels)], 0.001, 3, 1) for ex in examples]
        if progress:
            progress(len(examples))
        return out


class SaverStore:
    def save(self, artifacts: Artifacts, folder: Path) -> dict[str, Any]:
        (Path(folder) / "weight.json").write_text(json.dumps({"weight": artifacts.state["weight"]}))
        return {"format": 1}

    def load(self, folder: Path, task, lm, facts: Mapping[str, Any]) -> Artifacts:
        weight = json.loads((Path(folder) / "weight.json").read_text())["weight"]
        LOG["load"].append(weight)
        return Artifacts("saver", lm, task, state={"weight": weight})


def build(options: Mapping[str, Any] | None = None) -> Saver:
    return Saver(config_from(SaverConfig, dict(options or {}), "strategies.saver"))


STRATEGY = StrategyDef(name="saver", config=SaverConfig, build=build, predict_batch="batch_size",
                       code=("checkpoint_fakes",), artifacts=SaverStore())

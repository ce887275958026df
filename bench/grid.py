"""The grid as values: `plan(config) -> list[CellSpec]`, one frozen spec per cell.

A `CellSpec` says everything a worker needs to run one cell anywhere (this process,
a Ray actor on another machine): which task (its config entry, a built-in name or a
spec path, and the data seed), which strategy entry (name, label, options), which
model entry, the seed, the limits, and the resources it asks of a cluster. It is
plain data: `to_dict()` / `from_dict()` round-trip through JSON, so an executor can
ship it and a run folder can record it. Executors never read the config for what a
cell is; they read its spec.

Resources: the strategy's own (`STRATEGY.resources` once strategies declare them;
until then one CPU, plus one GPU for strategies that change weights), then the
config's `resources:` for the strategy's name, then for its label (most specific
wins). An executor drops `num_gpus` on a cluster without GPUs.

Learning curves (`train_sizes:`): a strategy that learns from train data
(`StrategyDef.learns_from_train`) gets one cell per size and seed, its `train_limit` the
size and its label `lora(n=200)`; strategies that never read the train split run once.
The model loads once per run whatever the sizes, and RAG's corpus index is keyed by the
corpus, not the train limit, so every size reuses one index.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from bench.errors import BenchError
from bench.store import cell_id
from bench.sweeps import split_train_size, with_train_size

RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")


@dataclass(frozen=True)
class TaskRef:
    entry: str  # the config's task entry: a built-in name or a YAML spec path
    data_seed: int = 0
    name: str = ""  # the task's own name (cell ids use it); filled by `plan`


@dataclass(frozen=True)
class StrategyEntry:
    name: str
    label: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CellSpec:
    cell: str
    task: TaskRef
    strategy: StrategyEntry
    model: Any  # the model entry as JSON: `bench.backends.ModelSpec.to_dict()`
    seed: int
    limit: int | None
    train_limit: int | None
    resources: Mapping[str, float] = field(default_factory=dict)

    @property
    def model_label(self) -> str:
        return model_label(self.model)

    def to_dict(self) -> dict[str, Any]:
        return {"cell": self.cell, "task": {"entry": self.task.entry, "data_seed": self.task.data_seed,
                                            "name": self.task.name},
                "strategy": {"name": self.strategy.name, "label": self.strategy.label,
                             "options": dict(self.strategy.options)},
                "model": self.model, "seed": self.seed, "limit": self.limit, "train_limit": self.train_limit,
                "resources": dict(self.resources)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CellSpec":
        try:
            return cls(cell=str(data["cell"]), task=TaskRef(**data["task"]),
                       strategy=StrategyEntry(**data["strategy"]), model=data["model"], seed=int(data["seed"]),
                       limit=data.get("limit"), train_limit=data.get("train_limit"),
                       resources=dict(data.get("resources") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchError(f"a cell spec is damaged ({exc!r}); plan the grid again from its config") from None

    @classmethod
    def from_json(cls, text: str) -> "CellSpec":
        return cls.from_dict(json.loads(text))


def model_label(entry: Any) -> str:
    """The model's name in cell ids and tables: a ModelSpec mapping's label."""
    if isinstance(entry, Mapping):
        return str(entry.get("label") or entry.get("model"))
    return str(getattr(entry, "label", entry))


def strategy_resources(name: str) -> dict[str, float]:
    """What one cell of this strategy asks of a cluster, by the strategy's declaration
    (`StrategyDef.resources`)."""
    from strategies import STRATEGIES

    return dict(STRATEGIES.load(name).resources) if name in STRATEGIES else {"num_cpus": 1}


def cell_resources(config, strategy: StrategyEntry) -> dict[str, float]:
    out = strategy_resources(strategy.name)
    wanted = getattr(config, "resources", None) or {}
    for key in dict.fromkeys((strategy.name, split_train_size(strategy.label)[0], strategy.label)):
        extra = wanted.get(key) or {}
        unknown = sorted(set(extra) - set(RESOURCE_KEYS))
        if unknown:
            raise BenchError(f"config.resources.{key}: unknown key(s) {unknown}; known: {list(RESOURCE_KEYS)}")
        out.update(extra)
    return out


def task_names(config) -> dict[str, str]:
    """Each task entry -> the task's own name (loads the tasks: a bad file fails here)."""
    import tasks

    return {entry: tasks.load_task(entry, seed=config.data_seed).name for entry in config.tasks}


def learns_from_train(strategy: StrategyEntry) -> bool:
    """The strategy's declaration (`StrategyDef.uses_train`) for this entry's options."""
    from strategies import STRATEGIES

    return strategy.name in STRATEGIES and STRATEGIES.load(strategy.name).uses_train(strategy.options)


def sized(config, strategies: list[StrategyEntry]) -> list[tuple[StrategyEntry, int | None]]:
    """Each entry with its train limit. Under `train_sizes` an entry that learns from
    train data becomes one entry per size, labelled `label(n=size)` (bench/sweeps.py),
    every size with the same seeds; the others keep their label and run once."""
    sizes = getattr(config, "train_sizes", None)
    out: list[tuple[StrategyEntry, int | None]] = []
    for s in strategies:
        if sizes and learns_from_train(s):
            out += [(StrategyEntry(s.name, with_train_size(s.label, n), s.options), n) for n in sizes]
        else:
            out.append((s, config.train_limit))
    return out


def plan(config, names: Mapping[str, str] | None = None) -> list[CellSpec]:
    """Every cell of the config's grid, in run order: model, then task, strategy (and
    train size), seed. `names` maps task entries to task names when the caller has
    loaded the tasks."""
    names = dict(names) if names is not None else task_names(config)
    specs = []
    strategies = sized(config, [StrategyEntry(s.name, s.label, dict(s.options)) for s in config.strategy_specs()])
    resources = {s.label: cell_resources(config, s) for s, _ in strategies}
    for model_spec in config.model_specs():
        model = model_spec.to_dict()
        for entry in config.tasks:
            task = TaskRef(entry, config.data_seed, names[entry])
            for strategy, train_limit in strategies:
                for seed in config.seeds:
                    specs.append(CellSpec(cell_id(task.name, strategy.label, model_label(model), seed), task,
                                          strategy, model, seed, config.limit, train_limit,
                                          resources[strategy.label]))
    return specs

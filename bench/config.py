"""The experiment config: YAML (data only) merged with CLI flags, validated here.

YAML keys mirror `RunConfig`'s fields; unknown keys are an error naming the key.
A strategy entry is a name (`rag`) or a mapping with `name`, an optional `label`
(to run one strategy twice with different options) and the strategy's options:

    strategies:
      - prompting
      - {name: prompting, label: prompting-4shot, shots: 4}
      - {name: lora, max_steps: 40}
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError
from bench.models import DEFAULT_MODEL
from bench.options import config_from

DEFAULT_TASKS = ("rotten-tomatoes", "bbc-news", "squad", "product-facts")
DEFAULT_STRATEGIES = ("prompting", "rag", "lora")


@dataclass(frozen=True)
class StrategySpec:
    name: str
    label: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, entry: Any, where: str) -> "StrategySpec":
        if isinstance(entry, str):
            return cls(entry, entry, {})
        if isinstance(entry, Mapping):
            entry = dict(entry)
            if "name" not in entry:
                raise BenchError(f"{where}: a strategy mapping needs a 'name' key, got {sorted(entry)}")
            name = str(entry.pop("name"))
            label = str(entry.pop("label", name))
            return cls(name, label, entry)
        raise BenchError(f"{where}: a strategy is a name or a mapping with 'name', got {entry!r}")


@dataclass
class RunConfig:
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    strategies: list[Any] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    # Each a spec string (hf), `BACKEND:REST` or a mapping with `backend:` (bench/backends).
    models: list[Any] = field(default_factory=lambda: [DEFAULT_MODEL])
    seeds: list[int] = field(default_factory=lambda: [0])
    limit: int | None = 100  # test examples per task (None: the whole test split)
    train_limit: int | None = 1000  # train examples a strategy may use
    data_seed: int = 0  # seeds the task splits; `seeds` seed the strategies
    device: str = "auto"
    batch_size: int = 16  # prediction batch; on 2 CPU cores 16 generates 1.45x faster than 8
    max_context: int = 2048
    name: str | None = None
    out: str = "runs"
    # Options applied to every entry of that strategy: {lora: {max_steps: 40}}.
    strategy_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    trust_remote_code: bool = False
    # Reuse adapters and predictions from the content-addressed cache (bench/cache.py).
    cache: bool = True
    # Predictions are checkpointed every this many test examples (the resume unit).
    checkpoint_every: int = 32
    # Batch-1 latency: queries answered one at a time per cell after `warmup` discarded ones.
    latency_sample: int = 32
    warmup: int = 2
    # Pricing: {hardware: <bench.cost key>, usd_per_hour: float, monthly_volumes: [int],
    # api_model: <bench.cost API_PRICES key>}; all optional, defaults from bench.cost.
    cost: dict[str, Any] = field(default_factory=dict)
    # Who runs the cells: local (this process) or ray (bench/executors/ray.py, options
    # under `ray:`); `resources:` per strategy name or label, e.g. {lora: {num_gpus: 1}}.
    executor: str = "local"
    ray: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("tasks", "strategies", "models", "seeds"):
            value = getattr(self, key)
            if isinstance(value, (str, int)):
                value = [value]
            if not value:
                raise BenchError(f"config: '{key}' is empty; give at least one")
            setattr(self, key, list(value))
        self.seeds = [int(s) for s in self.seeds]
        if self.limit is not None and self.limit < 1:
            raise BenchError(f"config: limit must be >= 1 (or null for all), got {self.limit}")
        if self.train_limit is not None and self.train_limit < 1:
            raise BenchError(f"config: train_limit must be >= 1 (or null), got {self.train_limit}")
        if self.batch_size < 1:
            raise BenchError(f"config: batch_size must be >= 1, got {self.batch_size}")
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int) \
                or self.checkpoint_every < 1:
            raise BenchError(f"config: checkpoint_every must be an integer >= 1, got {self.checkpoint_every!r}")
        if self.latency_sample < 0 or self.warmup < 0:
            raise BenchError(f"config: latency_sample and warmup must be >= 0, got {self.latency_sample} "
                             f"and {self.warmup}")
        _check_cost(self.cost)
        if self.executor not in ("local", "ray"):
            raise BenchError(f"config: executor must be local or ray, got {self.executor!r}")
        if not isinstance(self.ray, Mapping) or not isinstance(self.resources, Mapping):
            raise BenchError("config: 'ray' and 'resources' must be mappings (see README, 'Scale out')")
        if self.name is None:
            self.name = _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
        from bench.store import safe_name

        if safe_name(self.name) != self.name:
            raise BenchError(f"config: run name {self.name!r} may hold only letters, digits, '-', '_' and '.'")
        models = [m.label for m in self.model_specs()]
        dupes = sorted({x for x in models if models.count(x) > 1})
        if dupes:
            raise BenchError(f"config: model label(s) {dupes} appear twice; give each entry its own 'label'")
        specs = self.strategy_specs()
        labels = [s.label for s in specs]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise BenchError(f"config: strategy label(s) {dupes} appear twice; give each entry its own 'label'")

    def strategy_specs(self) -> list[StrategySpec]:
        """Each strategy entry with its options: the run's `batch_size` as its prediction
        batch, then `strategy_options`, then the entry's own (the most specific wins);
        sweeps expanded (bench/sweeps.py)."""
        from strategies import STRATEGIES

        specs = [StrategySpec.parse(e, f"config.strategies[{i}]") for i, e in enumerate(self.strategies)]
        merged = []
        for spec in specs:
            # The strategy's own definition names its prediction batch option (unknown names fail later, clearly).
            key = STRATEGIES.load(spec.name).predict_batch if spec.name in STRATEGIES else None
            shared = {key: self.batch_size} if key else {}
            shared.update(self.strategy_options.get(spec.name, {}))
            shared.update(spec.options)
            merged.append(StrategySpec(spec.name, spec.label, shared))
        from bench.sweeps import expand  # a list of numbers for a training option: one entry per value

        return expand(merged, lambda name: name in STRATEGIES and STRATEGIES.load(name).changes_weights)

    def model_specs(self) -> list:
        from bench.backends import ModelSpec

        return [ModelSpec.parse(e, f"config.models[{i}]") for i, e in enumerate(self.models)]

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / str(self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


COST_KEYS = ("hardware", "usd_per_hour", "monthly_volumes", "api_model")


def _check_cost(cost: Any) -> None:
    from bench.cost import API_PRICES, HARDWARE_PRICES

    if not isinstance(cost, Mapping):
        raise BenchError(f"config.cost: expected a mapping with keys {list(COST_KEYS)}, got {cost!r}")
    unknown = sorted(set(cost) - set(COST_KEYS))
    if unknown:
        raise BenchError(f"config.cost: unknown key(s) {unknown}; known: {list(COST_KEYS)}")
    hw, price = cost.get("hardware"), cost.get("usd_per_hour")
    if hw is not None and hw not in HARDWARE_PRICES:
        raise BenchError(f"config.cost.hardware: {hw!r} is not in the price table; known: {sorted(HARDWARE_PRICES)}")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0):
        raise BenchError(f"config.cost.usd_per_hour: expected a number >= 0, got {price!r}")
    vols = cost.get("monthly_volumes")
    if vols is not None and (not isinstance(vols, list) or not vols
                             or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in vols)):
        raise BenchError(f"config.cost.monthly_volumes: expected a list of query counts >= 0, got {vols!r}")
    api = cost.get("api_model")
    if api is not None and api not in API_PRICES:
        raise BenchError(f"config.cost.api_model: {api!r} is not in the API price table; known: {sorted(API_PRICES)}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise BenchError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"{path}: the top level must be a mapping of config keys")
    return data


def make_config(yaml_path: str | None = None, **overrides: Any) -> RunConfig:
    """YAML first, then every override that is not None (the CLI's flags)."""
    data = load_yaml(yaml_path) if yaml_path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return config_from(RunConfig, data, str(yaml_path) if yaml_path else "config")

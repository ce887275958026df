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

from bench.errors import BenchError, DataError
from bench.models import DEFAULT_MODEL
from bench.options import config_from

DEFAULT_TASKS = ("rotten-tomatoes", "bbc-news", "squad", "product-facts")
DEFAULT_STRATEGIES = ("prompting", "rag", "lora")


class FieldError(BenchError):
    """A bad config value; `make_config` adds the file and line of `field`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"config.{field}: {message}")
        self.field, self.message = field, message


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
            name = entry.pop("name")
            label = entry.pop("label", name)
            if not isinstance(name, str) or not isinstance(label, str):
                raise BenchError(f"{where}: 'name' and 'label' must be text, got {name!r} and {label!r}")
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
    # Learning curves: every strategy that learns from train data runs once per size (as
    # its train_limit, cells labelled `lora(n=200)`), the others once (bench/grid.py).
    train_sizes: list[int] | None = None
    data_seed: int = 0  # seeds the task splits; `seeds` seed the strategies
    device: str = "auto"
    # Weights' dtype for the hf backend: auto | float32 | bfloat16 (bench/dtypes.py says
    # what auto picks); recorded in the manifest's config and in each cell's record.
    dtype: str = "auto"
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
    # Keeping current (bench/updates.py): a share in (0, 1] of each corpus rewritten, a JSONL
    # file of changed documents, or {task: either}; each cell then measures its update cost.
    corpus_change: Any = None
    refresh_per_month: float = 4  # corpus changes a month, for the monthly update cost
    # Also time a full rebuild of the changed corpus beside RAG's incremental re-index, and
    # check both retrieve alike: off by default, it re-embeds every document (minutes on a
    # big corpus) and is a check, not a cost any update pays.
    compare_rebuild: bool = False
    # Constraints for the recommendation per task (reports/decide_config.py): min_score,
    # max_p95_ms, monthly_queries, max_monthly_usd, amortize_months, tasks: {name: {...}}.
    decide: dict[str, Any] = field(default_factory=dict)
    # The results database (bench/history.py): {record: all|baselines|none, path: FILE}.
    history: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("tasks", "strategies", "models", "seeds"):
            value = getattr(self, key)
            if isinstance(value, (str, int, Mapping)) and not isinstance(value, bool):
                setattr(self, key, [value])
        check_fields(self.__dict__)
        for key in ("tasks", "strategies", "models", "seeds"):
            if not getattr(self, key):
                raise FieldError(key, "is empty; give at least one")
            setattr(self, key, list(getattr(self, key)))
        from bench.dtypes import CHOICES as DTYPES

        if self.dtype not in DTYPES:
            raise FieldError("dtype", f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.limit is not None and self.limit < 1:
            raise FieldError("limit", f"must be >= 1 (or null for all), got {self.limit}")
        if self.train_limit is not None and self.train_limit < 1:
            raise FieldError("train_limit", f"must be >= 1 (or null), got {self.train_limit}")
        if self.train_sizes is not None:
            if not self.train_sizes or any(n < 1 for n in self.train_sizes) or len(set(self.train_sizes)) < len(
                    self.train_sizes):
                raise FieldError("train_sizes", f"expected distinct integers >= 1 (or null), got {self.train_sizes}")
            self.train_sizes = sorted(self.train_sizes)
        if self.batch_size < 1:
            raise FieldError("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.checkpoint_every < 1:
            raise FieldError("checkpoint_every", f"must be an integer >= 1, got {self.checkpoint_every!r}")
        if self.latency_sample < 0 or self.warmup < 0:
            raise FieldError("latency_sample", f"latency_sample and warmup must be >= 0, got {self.latency_sample} "
                             f"and {self.warmup}")
        _check_cost(self.cost)
        from bench.updates import check_refresh, check_setting, check_tasks

        check_setting(self.corpus_change)
        check_tasks(self.corpus_change, _plain_names(self.tasks))
        check_refresh(self.refresh_per_month)
        _check_decide(self.decide, self.tasks)
        from bench.history import check_settings

        problem = check_settings(self.history)
        if problem:
            key, sep, rest = problem.partition(": ")
            known = sep and key in ("record", "path")
            raise FieldError(f"history.{key}" if known else "history", rest if known else problem)
        if self.executor not in ("local", "ray"):
            raise BenchError(f"config: executor must be local or ray, got {self.executor!r}")
        if not isinstance(self.ray, Mapping) or not isinstance(self.resources, Mapping):
            raise BenchError("config: 'ray' and 'resources' must be mappings (see README, 'Scale out')")
        if self.name is None:
            self.name = _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
        from bench.store import safe_name

        if safe_name(self.name) != self.name:
            raise FieldError("name", f"run name {self.name!r} may hold only letters, digits, '-', '_' and '.'")
        from bench import redact

        redact.collect(self.__dict__)  # secret-named options: their values are masked from now on
        _check_strategy_options(self.strategy_options)
        models = [m.label for m in self.model_specs()]
        dupes = sorted({x for x in models if models.count(x) > 1})
        if dupes:
            raise FieldError("models", f"model label(s) {dupes} appear twice; give each entry its own 'label'")
        specs = self.strategy_specs()
        labels = [s.label for s in specs]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise FieldError("strategies", f"strategy label(s) {dupes} appear twice; give each entry its own 'label'")
        from bench.names import check_grid

        check_grid(self)

    def strategy_specs(self) -> list[StrategySpec]:
        """Each strategy entry with its options: the run's `batch_size` as its prediction
        batch, then `strategy_options`, then the entry's own (the most specific wins);
        sweeps expanded (bench/sweeps.py)."""
        from strategies import STRATEGIES

        specs = []
        for i, entry in enumerate(self.strategies):
            try:
                specs.append(StrategySpec.parse(entry, "strategy entry"))
            except BenchError as exc:
                raise FieldError(f"strategies[{i}]", str(exc).removeprefix("strategy entry: ")) from None
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
        raise FieldError("cost", f"expected a mapping with keys {list(COST_KEYS)}, got {cost!r}")
    unknown = sorted(set(cost) - set(COST_KEYS))
    if unknown:
        raise FieldError(f"cost.{unknown[0]}", f"unknown key(s) {unknown}; known: {list(COST_KEYS)}")
    hw, price = cost.get("hardware"), cost.get("usd_per_hour")
    if hw is not None and hw not in HARDWARE_PRICES:
        raise FieldError("cost.hardware", f"{hw!r} is not in the price table; known: {sorted(HARDWARE_PRICES)}")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0):
        raise FieldError("cost.usd_per_hour", f"expected a number >= 0, got {price!r}")
    vols = cost.get("monthly_volumes")
    if vols is not None and (not isinstance(vols, list) or not vols
                             or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in vols)):
        raise FieldError("cost.monthly_volumes", f"expected a list of query counts >= 0, got {vols!r}")
    api = cost.get("api_model")
    if api is not None and api not in API_PRICES:
        raise FieldError("cost.api_model", f"{api!r} is not in the API price table; known: {sorted(API_PRICES)}")


def _plain_names(tasks: list[str]) -> list[str] | None:
    """The run's task names, or None when a task is given as a spec path (named by its
    spec, known once loaded): only plain names can be checked here."""
    return None if any("/" in t or t.endswith((".yaml", ".yml")) for t in tasks) else list(tasks)


def _check_decide(decide: Any, tasks: list[str]) -> None:
    from reports.decide_config import parse  # validated where it is used: by the reports

    parse(decide, _plain_names(tasks))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _list_of(ok: Any, what: str):
    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"expected a list of {what}, got {type(value).__name__} {value!r}"
        bad = next((i for i, v in enumerate(value) if not ok(v)), None)
        return None if bad is None else f"[{bad}]: expected {what}, got {type(value[bad]).__name__} {value[bad]!r}"
    return check


def _scalar(ok: Any, what: str):
    return lambda value: None if ok(value) else f"expected {what}, got {type(value).__name__} {value!r}"


_text = lambda v: isinstance(v, str) and bool(v.strip())  # noqa: E731
_entry = lambda v: _text(v) or isinstance(v, Mapping)  # noqa: E731 (a model mapping's keys: bench.backends)
FIELD_CHECKS = {
    "tasks": _list_of(_text, "a task name or task YAML path"),
    "strategies": _list_of(_entry, "a strategy name or a mapping with 'name'"),
    "models": _list_of(_entry, "a model spec (alias, HF id, folder, .gguf) or a backend mapping"),
    "seeds": _list_of(_is_int, "an integer seed"),
    "limit": _scalar(lambda v: v is None or _is_int(v), "an integer or null"),
    "train_limit": _scalar(lambda v: v is None or _is_int(v), "an integer or null"),
    "train_sizes": _scalar(lambda v: v is None or (isinstance(v, list) and all(_is_int(x) for x in v)),
                           "a list of integers (train examples per learning-curve point) or null"),
    "name": _scalar(lambda v: v is None or _text(v), "a run name (text)"),
    "out": _scalar(_text, "a folder path (text)"),
    "device": _scalar(_text, "auto, cpu or cuda"),
    "dtype": _scalar(lambda v: v in ("auto", "float32", "bfloat16"), "auto, float32 or bfloat16"),
    "strategy_options": _scalar(lambda v: isinstance(v, Mapping), "a mapping {strategy: {option: value}}"),
    "cost": _scalar(lambda v: isinstance(v, Mapping), f"a mapping with keys {list(COST_KEYS)}"),
    "decide": _scalar(lambda v: isinstance(v, Mapping), "a mapping of constraints (min_score, max_p95_ms, ...)"),
    "trust_remote_code": _scalar(lambda v: isinstance(v, bool), "true or false"),
    "cache": _scalar(lambda v: isinstance(v, bool), "true or false"),
    "compare_rebuild": _scalar(lambda v: isinstance(v, bool), "true or false (time a full rebuild beside RAG's "
                                                              "incremental re-index)"),
    "history": _scalar(lambda v: isinstance(v, Mapping), "a mapping {record: all|baselines|none, path: FILE}"),
    **{k: _scalar(_is_int, "an integer") for k in ("data_seed", "batch_size", "max_context", "checkpoint_every",
                                                   "latency_sample", "warmup")},
}


def check_fields(values: Mapping[str, Any]) -> None:
    """Each known field's type; the first problem is a FieldError naming the field (and item)."""
    for key, check in FIELD_CHECKS.items():
        if key in values:
            problem = check(values[key])
            if problem:
                index, _, rest = problem.partition("]: ") if problem.startswith("[") else ("", "", problem)
                raise FieldError(f"{key}{index}]" if index else key, rest)


def _check_strategy_options(options: Mapping[str, Any]) -> None:
    from strategies import STRATEGIES

    for name, opts in options.items():
        if name not in STRATEGIES:
            import difflib

            close = difflib.get_close_matches(str(name), STRATEGIES.names(), 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FieldError(f"strategy_options.{name}", f"unknown strategy {name!r}{hint}; known: "
                             f"{', '.join(STRATEGIES.names())}")
        if not isinstance(opts, Mapping):
            raise FieldError(f"strategy_options.{name}", f"expected a mapping of options, got {opts!r}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    return _load_doc(path).data


def _load_doc(path: str | Path):
    from bench import yamlio

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"config file {path} does not exist")
    doc = yamlio.load_file(path)
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise DataError("the top level must be a mapping of config keys", path=path, line=1)
    return doc


def make_config(yaml_path: str | None = None, **overrides: Any) -> RunConfig:
    """YAML first, then every override that is not None (the CLI's flags). A bad value
    from the file is reported as file:line: field."""
    doc = _load_doc(yaml_path) if yaml_path else None
    data = dict(doc.data) if doc else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    known = set(RunConfig.__dataclass_fields__)
    unknown = [k for k in data if k not in known]
    if doc is not None and unknown and unknown[0] not in given:
        import difflib

        close = difflib.get_close_matches(str(unknown[0]), known, 1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise doc.error(str(unknown[0]), f"unknown option(s) {unknown[0]}{hint}; known: {', '.join(sorted(known))}")
    try:
        return config_from(RunConfig, data, str(yaml_path) if yaml_path else "config")
    except FieldError as exc:
        if doc is None or exc.field.split(".")[0].split("[")[0] in given:
            raise
        raise doc.error(exc.field, exc.message) from None

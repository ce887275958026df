"""The `decide:` block: a team's constraints, validated where the report uses them.

    decide:
      min_score: 0.8            # the task metric (0 to 1) the strategy must reach
      max_p95_ms: 300           # batch-1 p95 latency it must stay under
      monthly_queries: 2000000  # the volume the monthly cost is priced at
      max_monthly_usd: 500      # what serving may cost a month
      amortize_months: 12       # prepare cost (index build, training) spread over this many months
      tasks: {squad: {min_score: 0.3}}   # per task, any of the keys above

A task's constraints are the top level with its `tasks:` entry laid over it. A flag on
`bench run`, `bench report` or `bench compare` (`--min-score` ...) sets its constraint
for every task, replacing the per-task values of that key: "re-decide with 0.8" means
0.8 everywhere. The block is plain data in the config (and so in the run's manifest);
this module turns it into `DecideConfig`, or a `FieldError` naming `config.decide.<key>`.
It imports nothing heavy: `bench.config` validates with it on every `bench run`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from bench.config import FieldError

DEFAULT_AMORTIZE_MONTHS = 12
# The same keys at the top level and per task.
LIMIT_KEYS = ("min_score", "max_p95_ms", "monthly_queries", "max_monthly_usd", "amortize_months")
FLAGS = {"min_score": "--min-score", "max_p95_ms": "--max-p95-ms", "monthly_queries": "--monthly-queries",
         "max_monthly_usd": "--max-monthly-usd"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


CHECKS = {
    "min_score": (lambda v: _number(v) and 0 <= v <= 1, "a score between 0 and 1 (the task metric's scale)"),
    "max_p95_ms": (lambda v: _number(v) and v > 0, "milliseconds > 0"),
    "monthly_queries": (lambda v: _number(v) and v >= 1 and float(v).is_integer(), "a whole number of queries >= 1"),
    "max_monthly_usd": (lambda v: _number(v) and v >= 0, "dollars >= 0"),
    "amortize_months": (lambda v: _number(v) and v > 0, "months > 0"),
}


@dataclass(frozen=True)
class Constraints:
    """One task's constraints; None: not constrained."""

    min_score: float | None = None
    max_p95_ms: float | None = None
    monthly_queries: int | None = None
    max_monthly_usd: float | None = None
    amortize_months: float = DEFAULT_AMORTIZE_MONTHS

    def __post_init__(self) -> None:
        if self.monthly_queries is not None:
            object.__setattr__(self, "monthly_queries", int(self.monthly_queries))

    def limits(self) -> list[str]:
        """The constraints a strategy must meet, in a fixed order (used for ties)."""
        return [k for k in ("min_score", "max_p95_ms", "max_monthly_usd") if getattr(self, k) is not None]


@dataclass(frozen=True)
class DecideConfig:
    top: Constraints = field(default_factory=Constraints)
    tasks: Mapping[str, Constraints] = field(default_factory=dict)
    source: str = "the run's config"

    def for_task(self, task: str) -> Constraints:
        return self.tasks.get(task, self.top)


def _check_limits(values: Mapping[str, Any], where: str, allow_tasks: bool) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise FieldError(where, f"expected a mapping with keys {list(LIMIT_KEYS)}, got {values!r}")
    known = LIMIT_KEYS + (("tasks",) if allow_tasks else ())
    for key, value in values.items():
        if key not in known:
            import difflib

            close = difflib.get_close_matches(str(key), known, 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FieldError(f"{where}.{key}", f"unknown key{hint}; known: {', '.join(known)}")
        if key == "tasks":
            continue
        ok, what = CHECKS[key]
        if not ok(value):
            raise FieldError(f"{where}.{key}", f"expected {what}, got {value!r}")
    return {k: v for k, v in values.items() if k != "tasks"}


def parse(block: Any, task_names: list[str] | None = None, source: str = "the run's config") -> DecideConfig | None:
    """The validated block, or None when it is empty (no `decide:` in the config).
    `task_names`: the run's tasks, when all are known by name, to catch a typo."""
    if block is None or (isinstance(block, Mapping) and not block):
        return None
    top = _check_limits(block, "decide", allow_tasks=True)
    per_task = block.get("tasks") or {}
    if not isinstance(per_task, Mapping):
        raise FieldError("decide.tasks", f"expected a mapping {{task: {{min_score: ...}}}}, got {per_task!r}")
    tasks = {}
    for name, values in per_task.items():
        where = f"decide.tasks.{name}"
        if task_names is not None and name not in task_names:
            raise FieldError(where, f"no task {name!r} in this run; its tasks: {', '.join(task_names)}")
        tasks[str(name)] = {**top, **_check_limits(values, where, allow_tasks=False)}
    config = DecideConfig(Constraints(**top), {k: Constraints(**v) for k, v in tasks.items()}, source)
    for name, c in [(None, config.top), *config.tasks.items()]:
        if c.max_monthly_usd is not None and c.monthly_queries is None:
            where = "decide.max_monthly_usd" if name is None else f"decide.tasks.{name}.max_monthly_usd"
            raise FieldError(where, "needs monthly_queries: a monthly cost is the monthly volume x the cost "
                             "per query (plus the amortised prepare cost)")
    return config


def with_flags(block: Mapping[str, Any] | None, flags: Mapping[str, Any]) -> dict[str, Any]:
    """`block` with each given flag's constraint set for every task (per-task values of
    that key dropped). Values are checked here, so a bad one names its flag."""
    given = {k: v for k, v in flags.items() if v is not None}
    out = dict(block or {})
    for key, value in given.items():
        ok, what = CHECKS[key]
        if not ok(value):
            raise FieldError(f"decide.{key}", f"{FLAGS.get(key, key)}: expected {what}, got {value!r}")
        out[key] = value
    if given and isinstance(out.get("tasks"), Mapping):
        tasks = {name: {k: v for k, v in values.items() if k not in given}
                 for name, values in out["tasks"].items() if isinstance(values, Mapping)}
        out["tasks"] = {name: values for name, values in tasks.items() if values}
        if not out["tasks"]:
            out.pop("tasks")
    return out


def from_manifest(manifest: Mapping[str, Any], flags: Mapping[str, Any] | None = None,
                  where: str = "manifest.json") -> DecideConfig | None:
    """The constraints a report applies: the run's recorded `config.decide`, with the
    command line's flags over it."""
    config = manifest.get("config") if isinstance(manifest.get("config"), Mapping) else {}
    block = config.get("decide") if isinstance(config.get("decide"), Mapping) else {}
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    merged = with_flags(block, given)  # a bad flag is named as the flag
    source = ("the command line" if not block else "the run's config and the command line") if given \
        else "the run's config"
    try:
        return parse(merged, source=source)
    except FieldError as exc:
        from bench.errors import BenchError

        with_given = " with the command line's constraints" if given else ""
        raise BenchError(f"{where}{with_given}: {exc}; fix the config, or override it with "
                         f"{', '.join(FLAGS.values())}") from None


def _value(key: str, v: Any) -> str:
    from reports.costs import fmt_usd

    if v is None:
        return "none"
    return {"min_score": f"{v:.2f}", "max_p95_ms": f"{v:,.0f} ms", "monthly_queries": f"{v:,}",
            "max_monthly_usd": fmt_usd(v), "amortize_months": f"{v:g}"}[key]


LABELS = {"min_score": "min score {}", "max_p95_ms": "p95 at most {}", "monthly_queries": "{} queries a month",
          "max_monthly_usd": "at most {} a month", "amortize_months": "prepare cost spread over {} months"}


def describe(config: DecideConfig, tasks: list[str]) -> str:
    """"min score 0.80 (squad: 0.30); p95 at most 300 ms; 2,000,000 queries a month;
    at most $500 a month; prepare cost spread over 12 months"."""
    mine = [c for t, c in config.tasks.items() if t in tasks] + [config.top]
    parts = []
    for f in fields(Constraints):
        key, top = f.name, getattr(config.top, f.name)
        if key == "amortize_months" and all(c.monthly_queries is None for c in mine):
            continue  # no monthly cost anywhere: nothing is amortised
        special = [f"{t}: {_value(key, getattr(c, key))}" for t, c in config.tasks.items()
                   if t in tasks and getattr(c, key) != top]
        if top is None and not special:
            continue
        head = LABELS[key].format(_value(key, top)) if top is not None else f"{key.replace('_', ' ')} per task"
        parts.append(head + (f" ({'; '.join(special)})" if special else ""))
    return "; ".join(parts)

"""The strategy protocol and its small frozen dataclasses. Nothing else lives here.

Rules every strategy follows:
- `prepare(task, model, budget)` does all the expensive, cacheable work (choosing
  demonstrations, building an index, training an adapter) and *returns* it as
  `Artifacts`; the strategy object itself is never mutated, so the runner can time,
  cache and reuse what `prepare` made.
- `predict(artifacts, examples)` answers test examples in order, one `Prediction` per
  example, and never looks at `Example.target`.
- Strategies share plain functions (`strategies/prompts.py`), never base classes, and
  reach the model only through `bench.lm.LM` (weights only through `TrainableLM`).
- Optionally, `latency_variants(artifacts)` yields (name, artifacts) for other ways
  to serve the same preparation (a LoRA adapter merged into the weights); the runner
  measures each one's batch-1 latency after the default's. It may change the artifacts
  in place, since it runs last.
- A strategy is configured by its own dataclass, validated in `__post_init__`, built
  from a plain mapping via `from_options` (unknown keys are an error).
- Each strategy module exports one `STRATEGY = StrategyDef(...)`: everything the
  harness knows about it (its prediction-batch option, the code that shapes its
  predictions, how its prepared artifacts are saved and loaded, what it needs from the
  backend). The harness asks that object and keeps no table keyed by strategy name.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # the protocol must stay importable without torch
    from bench.lm import LM
    from tasks.model import Example, Task


@dataclass(frozen=True)
class Budget:
    """Limits the runner hands to `prepare`."""

    seed: int = 0
    # Cap on training examples a strategy may use (None: all of them).
    max_train_examples: int | None = None
    # Folder where the strategy may write artifacts (an adapter, an index).
    workdir: Path | None = None
    batch_size: int = 8
    # Opens a progress bar for a named phase: `with phase(budget.progress, "train", n) as bar`.
    progress: Any = None
    # False (`bench run --no-cache`): a strategy's own caches (RAG's indexes) neither read nor write.
    cache: bool = True


@dataclass(frozen=True)
class Artifacts:
    """What `prepare` made. `state` holds live objects (an index, a wrapped model);
    `info` holds plain, JSON-able facts that go into the results (trainable params,
    loss curve, index type...)."""

    strategy: str
    model: "LM"
    task: "Task"
    state: Mapping[str, Any] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    example_id: str
    output: str
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    retrieved_ids: tuple[str, ...] = ()
    # Prompts truncated to fit the context window, so reports can count them.
    truncated: bool = False
    # Seconds from the start of the query's batch to its first answer token (None: unknown).
    first_token_s: float | None = None
    # Seconds of `latency_s` spent retrieving (query embedding plus index search).
    retrieval_s: float = 0.0
    # How the answer was chosen: "logprobs" (labels scored) or "generate" (greedy text,
    # matched to the labels where the backend has no prompt log-probabilities).
    scoring: str | None = None


@runtime_checkable
class ArtifactStore(Protocol):
    """How a strategy's prepared artifacts go to disk and back (bench/prepared.py
    keys, checksums and places them). Safetensors and JSON only: never pickles."""

    def save(self, artifacts: Artifacts, folder: Path) -> dict[str, Any]:
        """Write into `folder` (it exists, empty); return plain facts for `load`."""
        ...

    def load(self, folder: Path, task: "Task", lm: "LM", facts: Mapping[str, Any]) -> Artifacts: ...


@dataclass(frozen=True)
class StrategyDef:
    """What the harness knows about one strategy (one per strategy module, `STRATEGY`)."""

    name: str
    config: type  # the config dataclass; `build` validates options through it
    build: Callable[[Mapping[str, Any]], "Strategy"]
    predict_batch: str | None = None  # the config field a CUDA OOM in predict halves
    # Modules whose source shapes this strategy's prepared artifacts and predictions: all
    # of them go into cache keys (the backend's module is added by the harness).
    code: tuple[str, ...] = ()
    artifacts: ArtifactStore | None = None  # None: prepare is cheap and never cached
    needs: frozenset[str] = frozenset()  # Capabilities names the backend must have
    resources: Mapping[str, Any] = field(default_factory=lambda: {"num_cpus": 1})
    changes_weights: bool = False
    # Whether cells of this strategy depend on the labelled train examples (learning
    # curves run such a strategy once per train size): a bool, or a function of the
    # strategy's validated config (k-shot prompting learns, zero-shot does not).
    learns_from_train: bool | Callable[[Any], bool] = False
    # How prepared artifacts become current after a corpus change (bench/updates.py):
    # `update(strategy, artifacts, change, progress) -> facts` (seconds, what was redone),
    # on a copy, after the cell predicted. None: a strategy that changes weights retrains
    # (its prepare seconds are the estimate); any other reads no corpus and redoes nothing.
    update: Callable[..., Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.predict_batch is not None and self.predict_batch not in {f.name for f in fields(self.config)}:
            raise ValueError(f"strategy {self.name}: predict_batch {self.predict_batch!r} is not a field "
                             f"of {self.config.__name__}")
        object.__setattr__(self, "code", tuple(self.code))
        object.__setattr__(self, "needs", frozenset(self.needs))

    def uses_train(self, options: Mapping[str, Any]) -> bool:
        """`learns_from_train` for one entry's options (validated by the config class)."""
        if not callable(self.learns_from_train):
            return bool(self.learns_from_train)
        from bench.options import config_from

        return bool(self.learns_from_train(config_from(self.config, dict(options), f"strategies.{self.name}")))


@runtime_checkable
class Strategy(Protocol):
    name: str

    def prepare(self, task: "Task", model: "LM", budget: Budget) -> Artifacts: ...

    def predict(self, artifacts: Artifacts, examples: Sequence["Example"],
                progress: Callable[[int], None] | None = None) -> list[Prediction]: ...

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
"""
from __future__ import annotations

from dataclasses import dataclass, field
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
class Strategy(Protocol):
    name: str

    def prepare(self, task: "Task", model: "LM", budget: Budget) -> Artifacts: ...

    def predict(self, artifacts: Artifacts, examples: Sequence["Example"],
                progress: Callable[[int], None] | None = None) -> list[Prediction]: ...

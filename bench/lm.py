"""The language-model interface every strategy and the runner talk to. Nothing else lives here.

Rules every backend follows:
- `fingerprint` changes whenever anything that shapes an answer changes (weights,
  tokenizer, chat template, the server and model behind an endpoint); cache keys use it,
  so two backends never serve each other's cached predictions.
- `capabilities` says what the backend can do; the grid is checked against what each
  strategy needs before any model loads (a LoRA cell on a hosted API is a config error).
- `render(user, shots)` returns the prompt as the model expects it (chat template when
  it has one), ending where the answer starts; `count_tokens` counts it with the
  model's own tokenizer, so prompts are budgeted to `max_context`.
- `generate` is greedy and returns outputs in the caller's order; `score_choices`
  returns the summed log-likelihood of each choice after each prompt (or, where the
  backend has no prompt log-probabilities, a greedy answer matched to the choices,
  with `ChoiceScores.method == "generate"`).
- Latency in the results is measured by the backend per query (a batch's wall time
  shared equally by its queries in-process; per request at the client for a server).
- Only a `TrainableLM` exposes weights: `torch_model`, token ids, and `with_adapter`,
  which returns the same backend over other weights. Strategies that change weights
  need it; every other strategy works on any `LM`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

Progress = Callable[[int], None]  # called with the number of queries just finished


@dataclass(frozen=True)
class Capabilities:
    prompt_logprobs: bool = True  # score_choices by log-likelihood (else: constrained generation)
    trainable: bool = False  # a TrainableLM: torch weights in this process
    adapters: bool = False  # can serve a trained LoRA adapter (in-process, or a server with --enable-lora)
    chat: bool = True  # renders a chat template

    def names(self) -> set[str]:
        return {name for name, on in vars(self).items() if on}


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    truncated: bool = False
    first_token_s: float | None = None  # the batch's (or request's) start to its first new token


@dataclass(frozen=True)
class ChoiceScores:
    best: int
    logprobs: tuple[float, ...]
    prompt_tokens: int
    latency_s: float
    truncated: bool = False
    method: str = "logprobs"  # "logprobs" | "generate" (fallback without prompt log-probabilities)


@runtime_checkable
class LM(Protocol):
    name: str
    fingerprint: str
    device: str
    max_context: int
    extra: dict

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def end_of_answer(self) -> str: ...

    def render(self, user: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 8,
                 progress: Progress | None = None) -> list[Generation]: ...

    def score_choices(self, prompts: Sequence[str], choices: Sequence[str], batch_size: int = 16,
                      progress: Progress | None = None) -> list[ChoiceScores]: ...


@runtime_checkable
class TrainableLM(LM, Protocol):
    @property
    def torch_model(self) -> Any: ...

    @property
    def pad_token_id(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def with_adapter(self, torch_model: Any, fingerprint: str) -> "TrainableLM": ...


@runtime_checkable
class AdapterServingLM(LM, Protocol):
    """A backend that serves adapters trained elsewhere on its own base weights (a vLLM
    server started with --enable-lora): training runs on `trainable_base()`, the same
    base weights in this process, and predictions through `with_served_adapter`."""

    def trainable_base(self) -> TrainableLM: ...

    def with_served_adapter(self, adapter_dir: Any, name: str) -> LM: ...


def training_base(lm: LM, strategy: str) -> TrainableLM:
    """The in-process weights a weight-changing strategy trains on: the backend itself
    when it is trainable, else the adapter-serving backend's local twin."""
    if lm.capabilities.trainable:
        return lm  # type: ignore[return-value]
    if lm.capabilities.adapters and hasattr(lm, "trainable_base"):
        return lm.trainable_base()  # type: ignore[attr-defined]
    from bench.errors import BenchError

    raise BenchError(f"{strategy} changes model weights, but model {lm.name!r} has neither local weights nor "
                     "adapter serving; use the hf backend or a vLLM server started with --enable-lora")

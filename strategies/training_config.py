"""The training options every weight-changing strategy shares (`TrainingConfig`) and
their validation, which each method's config extends with its own fields."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from bench.errors import BenchError

# Fields shared by every weight-changing strategy's config, with their lower bounds.
_INTS = {"epochs": 1, "batch_size": 1, "grad_accum": 1, "max_length": 8, "eval_every": 1, "patience": 1,
         "max_val_examples": 0, "warmup_steps": 0, "predict_batch_size": 1, "probe_examples": 0}
_OPTIONAL_INTS = {"max_steps": 1, "max_train_examples": 1}
_FLOATS = {"learning_rate": 0.0, "weight_decay": 0.0, "max_grad_norm": 0.0}
_BOOLS = ("train_on_corpus", "gradient_checkpointing", "pad_to_max", "forgetting")
AUTOCAST = ("auto", "bf16", "off")


@dataclass(frozen=True)
class TrainingConfig:
    """Training options every weight-changing strategy has. A method's config adds its
    own fields (and may change a default, as full-ft does for the learning rate)."""

    PREFIX: ClassVar[str] = "training"
    # High, because a bench run trains for tens of steps, not thousands.
    learning_rate: float = 1e-3
    epochs: int = 1
    max_steps: int | None = None  # a cap on optimizer steps over all epochs
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    eval_every: int = 10
    patience: int = 3
    max_train_examples: int | None = None
    max_val_examples: int = 64
    train_on_corpus: bool = False
    warmup_steps: int = 0
    weight_decay: float = 0.0
    # Clip the global gradient norm before each step (0: off), as Trainer, TRL and axolotl
    # do by default: at a bench run's high learning rate unclipped steps overshoot.
    max_grad_norm: float = 1.0
    predict_batch_size: int = 8
    packing: str | bool = "auto"  # auto: on CUDA
    gradient_checkpointing: bool = False  # less activation memory for ~30% more compute
    pad_to_max: bool = False  # bench perf's baseline: pad to max_length, LM head everywhere
    forgetting: bool = True  # score the general-skill probe before and after (strategies/forgetting.py)
    probe_examples: int = 32
    # bf16 matmuls over fp32 weights: auto (where bf16 is native: CUDA, a CPU with
    # avx512_bf16/amx_bf16), bf16 or off (strategies/train_loop.py autocast_dtype).
    autocast: str = "auto"

    def __post_init__(self) -> None:
        check_training(self)


def bad(cfg: Any, name: str, want: str) -> BenchError:
    return BenchError(f"{cfg.PREFIX}.{name} must be {want}, got {getattr(cfg, name)!r}")


def check_training(cfg: Any, ints: Mapping[str, int] = {}, floats: Mapping[str, float] = {}) -> None:
    """Validate (and normalise) the shared fields plus a method's own numeric ones."""
    ints, floats = {**_INTS, **ints}, {**_FLOATS, **floats}
    for name in floats:  # YAML reads 1e-3 (no dot) as a string
        value = getattr(cfg, name)
        if isinstance(value, str):
            try:
                object.__setattr__(cfg, name, float(value))
            except ValueError:
                raise bad(cfg, name, "a number") from None
    for name, low in {**ints, **_OPTIONAL_INTS}.items():
        value = getattr(cfg, name)
        if value is None and name in _OPTIONAL_INTS:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(cfg, name, f"an integer >= {low}")
    for name, low in floats.items():
        value = getattr(cfg, name)
        strict = name not in ("weight_decay", "max_grad_norm")  # 0 is allowed: off
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < low or (value == low and strict):
            raise bad(cfg, name, f"a finite number {'>' if strict else '>='} {low}")
    for name in _BOOLS:
        if not isinstance(getattr(cfg, name), bool):
            raise bad(cfg, name, "true or false")
    if cfg.packing not in ("auto", True, False):
        raise bad(cfg, "packing", "auto, true or false")
    if cfg.autocast is False:  # YAML reads a bare `off` as false
        object.__setattr__(cfg, "autocast", "off")
    if cfg.autocast not in AUTOCAST:
        raise bad(cfg, "autocast", ", ".join(AUTOCAST[:-1]) + " or " + AUTOCAST[-1])


def check_targets(cfg: Any, name: str = "target_modules") -> None:
    targets = getattr(cfg, name)
    if isinstance(targets, (list, tuple)):
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise bad(cfg, name, '"all-linear" or a non-empty list of module names')
        object.__setattr__(cfg, name, tuple(targets))
    elif not (isinstance(targets, str) and targets):
        raise bad(cfg, name, '"all-linear" or a non-empty list of module names')

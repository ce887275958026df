"""Sensitivity sweeps: a list of numbers for a training option runs one entry per value.

    strategy_options: {lora: {learning_rate: [3e-4, 1e-3, 3e-3]}}
    strategies: [{name: lora, r: [4, 16]}]

expands into entries labelled `lora(learning_rate=0.0003)`, ... (several swept options:
their product, `lora(learning_rate=0.001,r=4)`). Only weight-changing strategies sweep,
because only their cells carry what picks the winner: the training's best validation
loss (`pick` below). The test split never chooses a setting; reports show the spread
over all settings and mark the validation-picked one, which the verdict uses.
A list of strings (`target_modules: [q_proj, v_proj]`) is an option's value, not a sweep.

Learning curves (`train_sizes:`, bench/grid.py) label their cells the same way with the
reserved setting `n`, the labelled examples a cell learned from: `lora(n=200)`,
`lora(r=4,n=200)`. `n` is not a sweep setting: `parse_label` keeps it in the group,
so a sweep picks its setting per train size.
"""
from __future__ import annotations

import itertools
import math
import re
from typing import Any, Callable, Iterable, Mapping

from bench.errors import BenchError

_LABEL = re.compile(r"^(?P<group>.+)\((?P<setting>[^()]+=[^()]+)\)$")


def _is_sweep(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(v, (int, float, str)) and not isinstance(v, bool) and _number(v) is not None for v in value)


def _number(value: Any) -> float | None:
    try:
        return float(value)  # YAML reads 1e-3 as a string
    except (TypeError, ValueError):
        return None


def _fmt(value: Any) -> str:
    number = _number(value)
    return f"{number:g}" if number is not None and isinstance(value, (float, str)) else str(value)


def expand(specs: Iterable[Any], changes_weights: Callable[[str], bool]) -> list[Any]:
    """Each spec whose options hold numeric lists becomes one spec per combination,
    labelled `label(k=v,...)`; other specs pass through unchanged. `changes_weights(name)`
    says whether a strategy trains (only those may sweep)."""
    out = []
    for spec in specs:
        swept = {k: list(v) for k, v in spec.options.items() if _is_sweep(v)}
        if not swept:
            out.append(spec)
            continue
        if not changes_weights(spec.name):
            raise BenchError(f"strategy {spec.label!r}: a list for {', '.join(sorted(swept))} is a sweep, and only "
                             "weight-changing strategies sweep (they pick a setting by validation loss); give "
                             "one entry per value with its own label instead")
        keys = sorted(swept)
        for combo in itertools.product(*(swept[k] for k in keys)):
            setting = ",".join(f"{k}={_fmt(v)}" for k, v in zip(keys, combo))
            options = {**spec.options, **dict(zip(keys, combo))}
            out.append(type(spec)(spec.name, f"{spec.label}({setting})", options))
    return out


def parse_label(label: str) -> tuple[str, str] | None:
    """(group, setting) of an expanded entry's label, or None for a plain one. A train
    size stays in the group: `lora(r=4,n=200)` -> (`lora(n=200)`, `r=4`)."""
    base, size = split_train_size(label)
    match = _LABEL.match(base)
    if not match:
        return None
    group = match["group"] if size is None else with_train_size(match["group"], size)
    return group, match["setting"]


TRAIN_SIZE = "n"


def with_train_size(label: str, size: int) -> str:
    """`lora` -> `lora(n=200)`; a sweep entry `lora(r=4)` -> `lora(r=4,n=200)`."""
    match = _LABEL.match(str(label))
    if match:
        return f"{match['group']}({match['setting']},{TRAIN_SIZE}={int(size)})"
    return f"{label}({TRAIN_SIZE}={int(size)})"


def split_train_size(label: str) -> tuple[str, int | None]:
    """(the label without its train size, the size) for a learning-curve cell's label;
    (label, None) for any other."""
    label = str(label)
    match = _LABEL.match(label)
    if not match:
        return label, None
    settings = match["setting"].split(",")
    last = settings[-1].partition("=")
    if last[0] != TRAIN_SIZE or not last[2].isdigit():
        return label, None
    rest = settings[:-1]
    return (f"{match['group']}({','.join(rest)})" if rest else match["group"]), int(last[2])


def pick(val_losses: Mapping[str, Iterable[float | None]]) -> str | None:
    """The setting with the lowest mean best validation loss over its seeds (settings
    without one never win); None when no setting has a validation loss."""
    means = {}
    for setting, losses in val_losses.items():
        finite = [float(x) for x in losses if x is not None and math.isfinite(float(x))]
        if finite:
            means[setting] = sum(finite) / len(finite)
    return min(means, key=means.get) if means else None

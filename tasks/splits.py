"""Seeded, deterministic splitting and ordering of examples.

Rules:
- The same examples, key and seed give the same splits on every machine and Python
  version: randomness comes only from `random.Random(seed)`, never from `hash()`
  (string hashing is salted per process) or from set iteration order.
- `stratified_split` keeps each class's share in every split (classification);
  `group_split` keeps groups whole (all questions about one paragraph on one side),
  so no evidence leaks from train into test.
- `mix_order` reorders a split so that any prefix is a proportional mix of keys:
  the runner's `--limit N` takes the first N test examples, and those must not be
  all one label or one attribute.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Callable, Hashable, Sequence, TypeVar

from tasks.model import Example

T = TypeVar("T")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
Splits = tuple[list[Example], list[Example], list[Example]]


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative shares (train, validation, test) that sum to 1."""
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise ValueError(f"split ratios must be three numbers, got {ratios!r}") from None
    if len(values) != 3 or any(r < 0 for r in values):
        raise ValueError(f"split ratios must be three non-negative numbers (train, validation, test), got {list(ratios)}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"split ratios must sum to 1, got {list(ratios)} (sum {sum(values):g})")
    return values  # type: ignore[return-value]


def _cut_sizes(n: int, ratios: tuple[float, float, float]) -> tuple[int, int]:
    """Validation and test sizes for `n` items; train takes the rest.

    Rounding alone would give a class of 5 no test item at 10%; a non-zero share
    gets at least one item while train keeps at least one, so small classes still
    appear in every split they are meant to.
    """
    n_val, n_test = round(n * ratios[1]), round(n * ratios[2])
    if ratios[1] > 0 and n_val == 0 and n - n_test > 1:
        n_val = 1
    if ratios[2] > 0 and n_test == 0 and n - n_val > 1:
        n_test = 1
    return n_val, n_test


def _sorted_keys(keys) -> list:
    # Keys may mix types in user data; sorting by repr is total and stable.
    return sorted(keys, key=lambda k: (str(type(k)), repr(k)))


def stratified_split(examples: Sequence[Example], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0,
                     key: Callable[[Example], Hashable] = lambda ex: ex.target) -> Splits:
    """(train, validation, test) with each `key` class split by `ratios`.

    Each split comes back shuffled, so train is not sorted by label (few-shot
    selection and training batches read it in order)."""
    shares = check_ratios(ratios)
    rng = random.Random(seed)
    by_key: dict[Hashable, list[Example]] = defaultdict(list)
    for ex in examples:
        by_key[key(ex)].append(ex)
    train: list[Example] = []
    val: list[Example] = []
    test: list[Example] = []
    for k in _sorted_keys(by_key):
        group = list(by_key[k])
        rng.shuffle(group)
        n_val, n_test = _cut_sizes(len(group), shares)
        test += group[:n_test]
        val += group[n_test:n_test + n_val]
        train += group[n_test + n_val:]
    for part in (train, val, test):
        rng.shuffle(part)
    return train, val, test


def group_split(examples: Sequence[Example], group: Callable[[Example], Hashable],
                ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0) -> Splits:
    """(train, validation, test) with whole groups on one side; `ratios` count groups.

    Examples keep their input order inside each split (they arrive grouped, which
    keeps a paragraph's questions together for inspection); reorder test with
    `mix_order` before a `--limit` can see it."""
    shares = check_ratios(ratios)
    groups: dict[Hashable, list[Example]] = defaultdict(list)
    for ex in examples:
        groups[group(ex)].append(ex)
    names = _sorted_keys(groups)
    random.Random(seed).shuffle(names)
    n_val, n_test = _cut_sizes(len(names), shares)
    side = {g: 2 for g in names[:n_test]}
    side.update({g: 1 for g in names[n_test:n_test + n_val]})
    parts: Splits = ([], [], [])
    for ex in examples:
        parts[side.get(group(ex), 0)].append(ex)
    return parts


def mix_order(items: Sequence[T], key: Callable[[T], Hashable], seed: int = 0) -> list[T]:
    """`items` reordered so every prefix holds each key in about its overall share.

    Within a key the order is shuffled; item i of a key with n items is placed at
    (i + jitter) / n on a common 0..1 line, then the line is read in order. A plain
    shuffle would do on average, but a 30-item prefix of a shuffle often misses a
    rare attribute entirely; this does not."""
    rng = random.Random(seed)
    by_key: dict[Hashable, list[T]] = defaultdict(list)
    for item in items:
        by_key[key(item)].append(item)
    placed: list[tuple[float, int, T]] = []
    for k in _sorted_keys(by_key):
        group = list(by_key[k])
        rng.shuffle(group)
        n = len(group)
        for i, item in enumerate(group):
            placed.append(((i + rng.random()) / n, len(placed), item))
    placed.sort(key=lambda t: (t[0], t[1]))
    return [item for _, _, item in placed]



def classification_task(name: str, instruction: str, labels: Sequence[str], examples: list[Example],
                        seed: int, source: str):
    """A built-in classification task: stratified 80/10/10 split, and a test order
    that keeps any prefix near the overall label mix (so `--limit 20` is fair)."""
    from tasks.model import Task

    train, validation, test = stratified_split(examples, seed=seed)
    test = mix_order(test, key=lambda ex: ex.target, seed=seed)
    return Task(name=name, kind="classification", instruction=instruction, labels=tuple(labels), train=train,
                validation=validation, test=test, metric="accuracy", source=source, max_new_tokens=4)

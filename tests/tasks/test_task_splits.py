"""Seeded splits: determinism, stratification, whole groups, mixed prefixes."""
from collections import Counter

import pytest

from tasks.model import Example
from tasks.splits import check_ratios, group_split, mix_order, stratified_split


def _examples(counts: dict[str, int]) -> list[Example]:
    out = []
    for label, n in counts.items():
        out += [Example(f"{label}-{i}", f"text {label} {i}", label, {"group": f"g{i // 4}-{label}"}) for i in range(n)]
    return out


def _ids(parts):
    return [[ex.id for ex in part] for part in parts]


def test_stratified_split_is_deterministic_and_seed_dependent():
    data = _examples({"a": 300, "b": 100})
    assert _ids(stratified_split(data, seed=3)) == _ids(stratified_split(list(data), seed=3))
    assert _ids(stratified_split(data, seed=3)) != _ids(stratified_split(data, seed=4))


def test_stratified_split_keeps_proportions_and_partitions():
    data = _examples({"a": 600, "b": 300, "c": 100})
    train, val, test = stratified_split(data, (0.8, 0.1, 0.1), seed=0)
    assert sorted(ex.id for ex in train + val + test) == sorted(ex.id for ex in data)
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    assert Counter(ex.target for ex in test) == {"a": 60, "b": 30, "c": 10}
    assert Counter(ex.target for ex in val) == {"a": 60, "b": 30, "c": 10}
    # train is shuffled, not grouped by label
    assert len({ex.target for ex in train[:20]}) > 1


def test_small_classes_still_reach_every_split():
    train, val, test = stratified_split(_examples({"big": 100, "tiny": 3}), seed=0)
    for part in (train, val, test):
        assert "tiny" in {ex.target for ex in part}


def test_ratios_are_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        check_ratios([0.8, 0.3, 0.1])
    with pytest.raises(ValueError, match="three"):
        check_ratios([0.5, 0.5])
    train, val, test = stratified_split(_examples({"a": 50}), (0.9, 0.0, 0.1), seed=0)
    assert (len(train), len(val), len(test)) == (45, 0, 5)


def test_group_split_keeps_groups_whole_and_is_deterministic():
    data = _examples({"a": 200, "b": 200})
    group = lambda ex: ex.meta["group"]  # noqa: E731
    parts = group_split(data, group, seed=1)
    sides = [{group(ex) for ex in part} for part in parts]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert len(sides[2]) == 10 and len(sides[1]) == 10 and len(sides[0]) == 80  # 100 groups, 80/10/10
    assert _ids(parts) == _ids(group_split(data, group, seed=1))
    assert _ids(parts) != _ids(group_split(data, group, seed=2))


def test_mix_order_gives_proportional_prefixes():
    items = [("a", i) for i in range(90)] + [("b", i) for i in range(10)]
    mixed = mix_order(items, key=lambda t: t[0], seed=0)
    assert sorted(mixed) == sorted(items)
    for n in (10, 20, 50):
        assert abs(sum(t[0] == "b" for t in mixed[:n]) - n / 10) <= 1
    assert mixed == mix_order(items, key=lambda t: t[0], seed=0)
    assert mixed != mix_order(items, key=lambda t: t[0], seed=1)

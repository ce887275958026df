"""Learning curves in the grid: `train_sizes` expands every strategy that learns from
train data into one cell per size (same seeds), leaves the others alone, and the train
subsets nest (a smaller size is a prefix of a larger one)."""
import random

import pytest

import bench.cli
import bench.run_flags
from bench.config import RunConfig
from bench.errors import BenchError
from bench.grid import plan
from bench.sweeps import parse_label, split_train_size, with_train_size
from strategies import STRATEGIES
from strategies.base import Budget
from strategies.prompts import labelled_subset
from tasks.model import Example

NAMES = {"toy-cls": "toy-sentiment"}


def test_sizes_expand_learners_only_with_the_same_seeds():
    cfg = RunConfig(tasks=["toy-cls"], seeds=[0, 1], train_sizes=[200, 50], train_limit=1000,
                    strategies=["prompting", {"name": "prompting", "label": "4shot", "shots": 4}, "rag", "lora"])
    assert cfg.train_sizes == [50, 200]  # sorted
    cells = plan(cfg, NAMES)
    by_label: dict = {}
    for c in cells:
        by_label.setdefault(c.strategy.label, []).append(c)
    assert sorted(by_label) == sorted(["prompting", "4shot(n=50)", "4shot(n=200)", "rag(n=50)", "rag(n=200)",
                                       "lora(n=50)", "lora(n=200)"])
    # Zero-shot prompting never reads the train split: it runs once per seed, at the run's train_limit.
    assert [(c.seed, c.train_limit) for c in by_label["prompting"]] == [(0, 1000), (1, 1000)]
    for label, group in by_label.items():
        base, size = split_train_size(label)
        assert [c.seed for c in group] == [0, 1]
        if size is not None:
            assert {c.train_limit for c in group} == {size} and group[0].strategy.name == (
                "prompting" if base == "4shot" else base)
            assert group[0].strategy.options == by_label[with_train_size(base, 50)][0].strategy.options
    assert len({c.cell for c in cells}) == len(cells) == 14
    # Without train_sizes the grid is what it was: one cell per strategy and seed.
    plain = plan(RunConfig(tasks=["toy-cls"], strategies=["prompting", "lora"], seeds=[0]), NAMES)
    assert [(c.strategy.label, c.train_limit) for c in plain] == [("prompting", 1000), ("lora", 1000)]


def test_declarations_say_who_learns_from_train():
    learners = {name for name in STRATEGIES.names() if STRATEGIES.load(name).uses_train({})}
    trainers = {name for name in STRATEGIES.names() if STRATEGIES.load(name).changes_weights}
    assert trainers <= learners and "rag" in learners
    assert "prompting" not in learners and STRATEGIES.load("prompting").uses_train({"shots": 2})


def test_sweeps_and_sizes_combine_and_the_sweep_picks_per_size():
    cfg = RunConfig(tasks=["toy-cls"], strategies=[{"name": "lora", "r": [4, 8]}], train_sizes=[16, 64])
    labels = [c.strategy.label for c in plan(cfg, NAMES)]
    assert labels == ["lora(r=4,n=16)", "lora(r=4,n=64)", "lora(r=8,n=16)", "lora(r=8,n=64)"]
    assert parse_label("lora(r=4,n=16)") == ("lora(n=16)", "r=4") and parse_label("lora(n=16)") is None
    assert split_train_size("lora(r=4,n=16)") == ("lora(r=4)", 16)


@pytest.mark.parametrize("bad", [[0, 5], [5, 5], []])
def test_bad_sizes_name_the_field(bad):
    with pytest.raises(BenchError, match="config.train_sizes"):
        RunConfig(train_sizes=bad)


def test_cli_flag(tmp_path):
    args = bench.cli._parser().parse_args(["run", "--tasks", "toy-cls", "--train-sizes", "200,50", "--out",
                                           str(tmp_path)])
    assert bench.run_flags.config_from_flags(args).train_sizes == [50, 200]
    args = bench.cli._parser().parse_args(["run", "--train-sizes", "50,lots"])
    with pytest.raises(BenchError, match="--train-sizes"):
        bench.run_flags.config_from_flags(args)


def test_subsets_nest_across_sizes_where_random_sample_would_not():
    train = [Example(f"e{i}", f"text {i}", "a") for i in range(1000)]
    small, large = labelled_subset(train, 50, 3), labelled_subset(train, 200, 3)
    assert large[:50] == small and len(set(e.id for e in large)) == 200
    # random.sample switches method with k, so its 50 are not among its 200 (why the helper exists).
    assert not {e.id for e in random.Random(3).sample(train, 50)} <= {e.id for e in random.Random(3).sample(train, 200)}
    assert labelled_subset(train, None, 3) == train and labelled_subset(train, 5000, 3) == train
    assert labelled_subset(train, 50, 4) != small  # the seed still matters


def test_each_learner_takes_its_examples_from_the_nested_subset(fake_handle):
    from fakes import HashingEmbedder, toy_classification
    from strategies.prompting import build as build_prompting
    from strategies.rag import RagConfig, RagStrategy
    from strategies.training import train_subset
    from strategies.lora import LoraStrategyConfig

    task = toy_classification()
    for n in (2, 5):
        allowed = {e.id for e in labelled_subset(task.train, n, 0)}
        budget = Budget(seed=0, max_train_examples=n, cache=False)
        demos = build_prompting({"shots": 2}).prepare(task, fake_handle, budget).info["demo_ids"]
        assert set(demos) <= allowed and len(demos) == 2
        pool = RagStrategy(RagConfig(demos_k=2), embedder=HashingEmbedder()).prepare(task, fake_handle, budget)
        assert set(pool.state["ids"]) == allowed
        assert {e.id for e in train_subset(task, LoraStrategyConfig(), budget, random.Random(0))} == allowed

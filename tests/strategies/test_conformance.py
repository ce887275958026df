"""Every registered strategy keeps the contract: its `StrategyDef` is complete and true
(config validates, the batch option exists, its code modules import), prepare makes
artifacts, one prediction per example in order with real token counts, answers never
depend on targets, and declared artifacts save and reload to the same predictions.
New strategies are checked as soon as they are registered."""
import dataclasses
import importlib.util

import pytest

from bench.errors import BenchError
from bench.options import config_from
from fakes import tiny_handle, toy_classification, toy_qa
from strategies import STRATEGIES, definition
from strategies.base import Artifacts, Budget, Prediction, Strategy, StrategyDef

# Small settings, by option name, so the whole grid runs in seconds on the tiny model.
FAST = {"shots": 2, "top_k": 2, "max_steps": 2, "eval_every": 2, "max_val_examples": 2, "probe_examples": 4,
        "num_virtual_tokens": 4}


@pytest.fixture(scope="module")
def handle():
    return tiny_handle(seed=5)


def fast_options(sdef: StrategyDef) -> dict:
    names = {f.name for f in dataclasses.fields(sdef.config)}
    return {k: v for k, v in FAST.items() if k in names}


def build_or_capability_error(sdef: StrategyDef, options: dict):
    """The strategy, or None where it needs hardware this machine lacks (and says so)."""
    try:
        return sdef.build(options)
    except BenchError as exc:
        import torch

        if sdef.resources.get("num_gpus") and not torch.cuda.is_available() and "CUDA" in str(exc):
            return None
        raise


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_definition_is_complete(name):
    sdef = definition(name)
    assert isinstance(sdef, StrategyDef) and sdef.name == name
    fields = {f.name for f in dataclasses.fields(sdef.config)}
    assert sdef.predict_batch is None or sdef.predict_batch in fields
    config_from(sdef.config, {}, name)  # the defaults validate
    with pytest.raises(BenchError, match="unknown option"):
        sdef.build({"no_such_option": 1})
    assert f"strategies.{sdef.build.__module__.split('.')[-1]}" in sdef.code  # its own module is in its keys
    assert all(importlib.util.find_spec(m) is not None for m in sdef.code), sdef.code
    assert sdef.changes_weights <= ("trainable" in sdef.needs or "adapters" in sdef.needs)
    assert sdef.resources.get("num_cpus", 0) >= 1


@pytest.mark.parametrize("task_factory", [toy_classification, toy_qa], ids=["classification", "qa"])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_conformance(name, task_factory, handle, tmp_path):
    sdef = definition(name)
    task = task_factory()
    strategy = build_or_capability_error(sdef, fast_options(sdef))
    if strategy is None:
        return  # checked: a clear capability error naming CUDA (and no fallback)
    assert isinstance(strategy, Strategy)
    artifacts = strategy.prepare(task, handle, Budget(seed=0, workdir=tmp_path, batch_size=4))
    assert isinstance(artifacts, Artifacts) and artifacts.strategy == strategy.name
    predictions = strategy.predict(artifacts, task.test)
    assert [p.example_id for p in predictions] == [ex.id for ex in task.test]
    assert all(isinstance(p, Prediction) and p.latency_s >= 0 and p.prompt_tokens > 0 for p in predictions)
    if task.kind == "classification":
        assert all(p.output in task.labels for p in predictions)

    # Replacing the test targets must not change a single answer.
    poisoned = [dataclasses.replace(ex, target="POISON", meta={}) for ex in task.test]
    again = strategy.predict(artifacts, poisoned)
    assert [p.output for p in again] == [p.output for p in predictions]

    if sdef.artifacts is not None:  # saved and reloaded: the same answers
        folder = tmp_path / "saved"
        folder.mkdir()
        facts = sdef.artifacts.save(artifacts, folder)
        assert not any(p.suffix in (".bin", ".pt", ".pth", ".pkl") for p in folder.rglob("*"))
        reloaded = sdef.artifacts.load(folder, task, handle, facts)
        assert [p.output for p in strategy.predict(reloaded, task.test)] == [p.output for p in predictions]

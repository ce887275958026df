"""Every registered strategy keeps the protocol: artifacts from prepare, one prediction
per example in order, real token counts, and answers that never depend on targets."""
import dataclasses

import pytest

from fakes import tiny_handle, toy_classification, toy_qa
from strategies import STRATEGIES
from strategies.base import Artifacts, Budget, Prediction, Strategy

# Small settings so the whole grid runs in seconds on the tiny in-process model.
FAST = {"prompting": {"shots": 2}, "rag": {"top_k": 2}, "lora": {"max_steps": 3, "eval_every": 2}}


@pytest.fixture(scope="module")
def handle():
    return tiny_handle(seed=5)


@pytest.mark.parametrize("task_factory", [toy_classification, toy_qa], ids=["classification", "qa"])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_conformance(name, task_factory, handle, tmp_path):
    task = task_factory()
    strategy = STRATEGIES.load(name)(FAST.get(name, {}))
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

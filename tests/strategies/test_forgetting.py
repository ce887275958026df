"""Forgetting on a planted case: the probe's answers are what the base model says, so the
base scores 1.0; an adapter trained to always answer the other label must lose it all
(forgetting 1.0, interval above zero), while one trained on the base's own answer loses
nothing. The base score is computed once per model fingerprint."""
import dataclasses

import pytest

from fakes import tiny_handle, toy_classification
from strategies import definition, forgetting
from strategies.base import Budget
from strategies.prompts import build_prompt, reserve_tokens


def _yes_no_task():
    toy = toy_classification(16)
    yes_no = {"positive": "yes", "negative": "no"}
    splits = {s: [dataclasses.replace(ex, target=yes_no[ex.target]) for ex in getattr(toy, s)]
              for s in ("train", "validation", "test")}
    return dataclasses.replace(toy, labels=("yes", "no"), instruction="Is the review positive?", **splits)


def test_an_adapter_that_always_answers_one_label_forgets_the_probe(monkeypatch):
    tiny, task = tiny_handle(seed=7), _yes_no_task()
    scored = tiny.score_choices([build_prompt(tiny, task, ex.input, reserve=reserve_tokens(task)) for ex in task.test],
                                list(task.labels))
    said = [task.labels[s.best] for s in scored]
    probe = dataclasses.replace(task, name="probe", train=[], validation=[],
                                test=[dataclasses.replace(ex, target=a) for ex, a in zip(task.test, said)])
    monkeypatch.setattr(forgetting, "probe_task", lambda n: probe)
    assert len(set(said)) == 1  # the tiny base answers one label everywhere
    other = next(label for label in task.labels if label != said[0])

    def adapt(answer):
        train = [dataclasses.replace(ex, target=answer) for ex in task.train]
        return definition("lora").build({"learning_rate": 0.05, "epochs": 4, "batch_size": 8, "dropout": 0.0,
                                         "probe_examples": 16}).prepare(
            dataclasses.replace(task, train=train, validation=[]), tiny, Budget(seed=0)).info

    forgot = adapt(other)
    assert (forgot["probe_base_accuracy"], forgot["probe_accuracy"]) == (1.0, 0.0)
    assert forgot["forgetting"] == 1.0 and forgot["forgetting_ci_low"] > 0
    kept = adapt(said[0])
    assert kept["probe_accuracy"] == 1.0 and kept["forgetting"] == 0.0
    assert kept["forgetting_ci_low"] <= 0 <= kept["forgetting_ci_high"]


def test_base_probe_is_scored_once_per_model(monkeypatch):
    tiny = tiny_handle(seed=8)
    calls = []
    real = forgetting.scores
    monkeypatch.setattr(forgetting, "scores", lambda lm, module, n: calls.append(lm.fingerprint) or real(lm, module, n))
    for _ in range(2):
        forgetting.base_scores(tiny, 4)
    assert calls == [tiny.fingerprint]
    same = forgetting.compare(forgetting.base_scores(tiny, 4), real(tiny, tiny.torch_model, 4))
    assert same["forgetting"] == 0 and same["forgetting_lm_loss"] == 0  # the same model forgets nothing
    assert same["probe_n"] == 4 and 0 < same["probe_base_lm_loss"]


def test_the_probe_is_balanced_at_every_size():
    for n in (2, 4, 8, 16, 32):
        probe = forgetting.probe_task(n)
        assert len(probe.test) == n and sum(ex.target == "true" for ex in probe.test) == n // 2

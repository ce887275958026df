"""Sensitivity sweeps: numeric lists expand into labelled entries; only weight-changing
strategies sweep; the summary marks the setting the validation loss picked, even when
another setting scored better on test, and shows the spread over settings."""
import math

import pytest

from bench.config import RunConfig
from bench.errors import BenchError
from bench.store import RunStore, cell_id
from bench.sweeps import parse_label, pick


def test_lists_expand_into_labelled_entries_most_specific_wins():
    cfg = RunConfig(strategies=["prompting", {"name": "lora", "r": [4, 16]}, {"name": "ia3", "label": "one"}],
                    strategy_options={"lora": {"learning_rate": [3e-4, "1e-3"], "target_modules": ["q_proj", "v_proj"]},
                                      "ia3": {"learning_rate": [0.01, 0.03]}})
    specs = {s.label: s for s in cfg.strategy_specs()}
    assert set(specs) == {"one(learning_rate=0.01)", "one(learning_rate=0.03)",
                             "lora(learning_rate=0.0003,r=4)", "lora(learning_rate=0.0003,r=16)",
                             "lora(learning_rate=0.001,r=4)", "lora(learning_rate=0.001,r=16)", "prompting"}
    lora = specs["lora(learning_rate=0.001,r=16)"]
    assert lora.name == "lora" and lora.options["r"] == 16 and lora.options["learning_rate"] == "1e-3"
    assert lora.options["target_modules"] == ["q_proj", "v_proj"]  # a list of names is a value, not a sweep
    from strategies import definition

    assert definition("lora").build(dict(lora.options)).config.learning_rate == 0.001
    assert parse_label("lora(learning_rate=0.001,r=16)") == ("lora", "learning_rate=0.001,r=16")
    assert parse_label("prompting") is None and parse_label("odd(name)") is None


def test_only_weight_changing_strategies_sweep():
    with pytest.raises(BenchError, match="'prompting': a list for shots is a sweep.*one entry per value"):
        RunConfig(strategies=[{"name": "prompting", "shots": [0, 2]}])


def test_pick_uses_the_lowest_validation_loss():
    assert pick({"a": [0.9, 0.7], "b": [0.75], "c": [None]}) == "b"
    assert pick({"a": [None], "b": []}) is None


def test_summary_marks_the_validation_pick_not_the_test_best(tmp_path):
    from reports.frame import load_run
    from reports.summary import summarize

    store = RunStore(tmp_path / "run")
    # learning_rate=0.01 scores best on test, but 0.001 has the lower validation loss.
    plan = {"lora(learning_rate=0.001)": (0.6, 0.80), "lora(learning_rate=0.01)": (0.9, 1.30),
            "lora(learning_rate=0.1)": (0.3, 2.10), "prompting": (0.5, None)}
    for label, (score, val_loss) in plan.items():
        cell = cell_id("t", label, "m", 0)
        store.append_rows([{"cell": cell, "task": "t", "strategy": label, "model": "m", "seed": 0,
                            "example_id": f"e{i}", "input": "x", "target": "a", "output": "a",
                            "score": float(i < score * 10), "exact_match": None, "f1": None, "latency_s": 0.1,
                            "prompt_tokens": 5, "completion_tokens": 1, "retrieved_ids": [], "recall_at_k": None,
                            "truncated": False} for i in range(10)])
        info = {"best_val_loss": val_loss, "trainable_params": 100, "forgetting": 0.25} if val_loss else {}
        store.append_cell({"cell": cell, "task": "t", "strategy": label, "model": "m", "seed": 0, "status": "ok",
                           "error": None, "metric": "accuracy", "n": 10, "prepare_s": 1.0, "predict_s": 1.0,
                           "device": "cpu", "info": info})
    store.write_json("manifest.json", {"name": "sweep", "config": {}})
    summary = summarize(load_run(store.root)).set_index("strategy")
    picked = summary[summary["sweep_picked"] == True].index.tolist()  # noqa: E712
    assert picked == ["lora(learning_rate=0.001)"]
    assert summary.loc["lora(learning_rate=0.01)", "score"] > summary.loc[picked[0], "score"]  # test-best differs
    assert summary.loc[picked[0], "sweep_group"] == "lora"
    assert summary.loc[picked[0], "sweep_score_spread"] == pytest.approx(0.6)
    assert summary.loc[picked[0], "forgetting"] == 0.25 and summary.loc[picked[0], "trainable_params"] == 100
    assert summary.loc["prompting", "sweep_group"] is None and math.isnan(summary.loc["prompting", "forgetting"])


def test_the_verdict_weighs_only_the_validation_picked_setting(tmp_path):
    from reports.frame import load_run
    from reports.markdown import summary_markdown
    from reports.summary import summarize

    test_summary_marks_the_validation_pick_not_the_test_best(tmp_path)
    text = summary_markdown(summarize(load_run(tmp_path / "run")))
    verdict = next(line for line in text.splitlines() if line.startswith("**Verdict:**"))
    assert "learning\\_rate=0.001" in verdict and "learning\\_rate=0.01\\]" not in verdict

"""The grid as values: CellSpec round trip, the plan's order, ids and resources."""
import json

import pytest

from bench.config import RunConfig
from bench.errors import BenchError
from bench.grid import CellSpec, plan


def test_cell_specs_round_trip_through_json_and_follow_the_run_order():
    cfg = RunConfig(tasks=["a.yaml", "b.yaml"], strategies=["prompting", {"name": "lora", "label": "lora-r4",
                                                                           "r": 4}],
                    models=["m1", "m2"], seeds=[0, 1], limit=5, train_limit=7, resources={"lora-r4": {"num_cpus": 2}})
    specs = plan(cfg, {"a.yaml": "alpha", "b.yaml": "beta"})
    assert len(specs) == 2 * 2 * 2 * 2
    assert [s.cell for s in specs[:3]] == ["alpha|prompting|m1|seed0", "alpha|prompting|m1|seed1",
                                           "alpha|lora-r4|m1|seed0"]
    assert {s.model_label for s in specs[:8]} == {"m1"}  # model-major: one load per model
    assert specs[0].model["backend"] == "hf" and specs[0].model["model"] == "m1"  # a ModelSpec, as JSON
    for spec in specs:
        again = CellSpec.from_json(json.dumps(json.loads(spec.to_json())))
        assert again == spec
    lora = next(s for s in specs if s.strategy.label == "lora-r4")
    assert lora.strategy.options["r"] == 4 and lora.strategy.name == "lora"
    assert (lora.limit, lora.train_limit, lora.task.entry, lora.task.name) == (5, 7, "a.yaml", "alpha")
    # LoRA changes weights: it asks for a GPU (dropped on a cluster without one); the config adds CPUs.
    assert lora.resources == {"num_cpus": 2, "num_gpus": 1}
    assert specs[0].resources == {"num_cpus": 1}


def test_a_damaged_spec_and_an_unknown_resource_are_clear_errors():
    with pytest.raises(BenchError, match="cell spec is damaged"):
        CellSpec.from_dict({"cell": "x"})
    cfg = RunConfig(tasks=["a.yaml"], strategies=["prompting"], resources={"prompting": {"gpus": 1}})
    with pytest.raises(BenchError, match=r"config.resources.prompting: unknown key\(s\) \['gpus'\]"):
        plan(cfg, {"a.yaml": "alpha"})

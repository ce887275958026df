import pytest

from bench.config import RunConfig, make_config
from bench.errors import BenchError
from bench.registry import Registry
from strategies import STRATEGIES
from tasks import TASKS


def test_registry_suggests_close_names():
    with pytest.raises(BenchError, match="Did you mean 'rag'"):
        STRATEGIES.check("rga")
    with pytest.raises(BenchError, match="squad"):
        TASKS.check("sqaud")


def test_registry_loads_lazily():
    reg = Registry("thing", {"json-dumps": "json:dumps"})
    assert reg.load("json-dumps")({"a": 1}) == '{"a": 1}'


def test_yaml_unknown_key_is_named(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("tasks: [squad]\nlimt: 5\n")
    with pytest.raises(BenchError, match=r"limt \(did you mean limit\?\)"):
        make_config(str(path))


def test_yaml_is_data_only(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("tasks: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(BenchError, match="not valid YAML"):
        make_config(str(path))


def test_flags_override_yaml_and_strategy_entries_parse(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("tasks: [squad]\nlimit: 5\nstrategies:\n  - prompting\n"
                    "  - {name: prompting, label: p4, shots: 4}\nstrategy_options: {prompting: {batch_size: 2}}\n")
    cfg = make_config(str(path), limit=7, tasks=None)
    assert cfg.limit == 7 and cfg.tasks == ["squad"]
    specs = cfg.strategy_specs()
    assert [s.label for s in specs] == ["prompting", "p4"]
    assert specs[1].options == {"batch_size": 2, "shots": 4}


@pytest.mark.parametrize("bad", [{"limit": 0}, {"tasks": []}, {"name": "../escape"},
                                 {"strategies": ["rag", "rag"]}])
def test_invalid_configs_are_rejected(bad):
    with pytest.raises(BenchError):
        RunConfig(**bad)


def test_run_batch_size_is_each_strategys_prediction_batch_unless_set():
    cfg = RunConfig(strategies=["prompting", "rag", {"name": "lora", "predict_batch_size": 2}], batch_size=12,
                    strategy_options={"rag": {"batch_size": 4}})
    options = {s.name: s.options for s in cfg.strategy_specs()}
    assert options["prompting"]["batch_size"] == 12  # from the run
    assert options["rag"]["batch_size"] == 4  # strategy_options win over the run
    assert options["lora"]["predict_batch_size"] == 2  # the entry's own option wins over both

"""One YAML loader for task specs and experiment configs: bounded (alias bombs, depth,
size), duplicate keys named with both lines, unknown keys refused at every level, and
every wrong type reported as file:line: field. JSONL lines get a depth limit too."""
import json
import resource
import time

import pytest

import bench.cli
from bench import jsonl, yamlio
from bench.config import make_config
from bench.errors import BenchError
from conftest import write_task
from tasks.user_spec import load_spec

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))


def _config(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def _cli_error(capsys, *argv):
    assert bench.cli.main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_an_alias_bomb_in_an_unused_part_of_a_config_is_refused_fast(tmp_path, capsys):
    path = _config(tmp_path, "tasks: [squad]\nunused:\n" + "".join("  " + line + "\n" for line in BOMB.splitlines()))
    err = _cli_error(capsys, str(path))
    assert "exp.yaml:8: expands to more than 200,000 values (an alias bomb?)" in err
    before, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(BenchError):
        make_config(str(path))
    # 10**9 values if built; refused in well under a second and a few MB (ru_maxrss is in KiB).
    assert time.perf_counter() - t0 < 2 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000


def test_an_alias_bomb_in_a_task_spec_is_refused(tmp_path):
    spec = write_task(tmp_path)
    spec.write_text(spec.read_text() + BOMB.replace("a:", "instruction_x:", 1))
    with pytest.raises(BenchError, match=r"mini.yaml:\d+: expands to more than"):
        load_spec(spec)


def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path, capsys):
    err = _cli_error(capsys, str(_config(tmp_path, "tasks: " + "[" * 5000 + "]" * 5000 + "\n")))
    assert "exp.yaml:1: nested deeper than 64 levels" in err


def test_a_duplicate_key_names_both_lines(tmp_path, capsys):
    err = _cli_error(capsys, str(_config(tmp_path, "tasks: [squad]\nlimit: 4\nstrategies: [prompting]\n"
                                                   "limit: 1000000\n")))
    assert "exp.yaml:4: duplicate key 'limit' on line 2 and line 4" in err


def test_an_unknown_strategy_under_strategy_options_is_refused(tmp_path, capsys):
    err = _cli_error(capsys, str(_config(tmp_path, "tasks: [squad]\nstrategy_options:\n  lora: {max_steps: 4}\n"
                                                   "  lroa: {max_steps: 40}\n")))
    assert "exp.yaml:4: field 'strategy_options.lroa': unknown strategy 'lroa' (did you mean 'lora'?)" in err


@pytest.mark.parametrize("text, where", [
    ("seeds: [1, two]\n", "exp.yaml:1: field 'seeds[1]': expected an integer seed, got str 'two'"),
    ("out: [1, 2]\n", "exp.yaml:1: field 'out': expected a folder path (text), got list"),
    ("tasks:\n  - squad\n  - {a: 1}\n", "exp.yaml:3: field 'tasks[1]': expected a task name or task YAML path"),
    ("limit: lots\n", "exp.yaml:1: field 'limit': expected an integer or null, got str 'lots'"),
    ("strategies:\n  - {name: 3}\n", "exp.yaml:2: field 'strategies[0]': 'name' and 'label' must be text"),
    ("cost: {hardwre: cpu}\n", "exp.yaml:1: field 'cost.hardwre': unknown key(s) ['hardwre']"),
    ("trust_remote_code: yes please\n", "exp.yaml:1: field 'trust_remote_code': expected true or false"),
    ("batch_size: 0\n", "exp.yaml:1: field 'batch_size': must be >= 1, got 0"),
    ("limt: 5\n", "exp.yaml:1: field 'limt': unknown option(s) limt (did you mean limit?)"),
])
def test_wrong_types_are_file_line_field_errors(tmp_path, text, where):
    with pytest.raises(BenchError) as info:
        make_config(str(_config(tmp_path, text)))
    assert where in str(info.value) and str(info.value).startswith(str(tmp_path))


def test_a_wrong_value_from_a_flag_is_named_without_a_line(tmp_path):
    with pytest.raises(BenchError, match=r"^config.limit: must be >= 1"):
        make_config(str(_config(tmp_path, "tasks: [squad]\n")), limit=0)


def test_task_spec_duplicate_keys_and_tags_are_refused(tmp_path):
    spec = write_task(tmp_path)
    spec.write_text(spec.read_text() + "kind: qa\n")
    with pytest.raises(BenchError, match=r"mini.yaml:6: duplicate key 'kind' on line 2 and line 6"):
        load_spec(spec)


def test_a_deep_json_value_on_one_jsonl_line_is_a_clear_error(tmp_path):
    spec = write_task(tmp_path)
    data = tmp_path / "mini.jsonl"
    deep = '{"id": "deep", "input": ' + "[" * 100_000 + "]" * 100_000 + ', "target": "good"}\n'
    data.write_text(data.read_text() + deep)
    with pytest.raises(BenchError, match=r"mini.jsonl:31: refused: nested deeper than 64 levels"):
        load_spec(spec)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(deep)
    assert jsonl.read(rows).bad == 1


def test_yaml_nesting_within_the_limit_still_loads():
    doc = yamlio.load_text("a: " + "[" * 60 + "1" + "]" * 60 + "\n")
    value = doc.data["a"]
    for _ in range(59):
        value = value[0]
    assert value == [1]
    assert json.loads(json.dumps(doc.data))  # plain data only

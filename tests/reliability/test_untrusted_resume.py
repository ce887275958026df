"""A run folder is untrusted input: `--resume` takes what reaches outside the folder
(a model's own code, task specs, model paths) only from the command line, and rows
edited with a recomputed plain checksum are caught by the per-user keyed MAC."""
import json

import pytest

import bench.cli
import bench.run_flags
import bench.backends
from bench import jsonl
from bench.config import RunConfig
from bench.runner import Runner
from conftest import write_task


@pytest.fixture
def stored_run(tmp_path, fake_world, monkeypatch):
    seen = []
    real = bench.backends.load_lm
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: (seen.append(kw), real(spec, **kw))[1])
    cfg = RunConfig(tasks=["toy-cls"], strategies=["prompting"], out=str(tmp_path / "runs"), name="r", limit=4,
                    latency_sample=0, warmup=0, cache=False)
    Runner(cfg, log=lambda *_: None).run()
    (cfg.run_dir / "cells.jsonl").write_text("")  # as if the run had died: resume must load the model
    return cfg.run_dir, seen


def _edit_config(run_dir, **changes):
    path = run_dir / "manifest.json"
    doc = json.loads(path.read_text())
    doc["config"].update(changes)
    path.write_text(json.dumps(doc))


def _resume(run_dir, *flags):
    return bench.cli.main(["run", "--resume", str(run_dir), *flags])


def test_a_stored_trust_remote_code_is_refused_without_the_flag(stored_run, capsys):
    run_dir, seen = stored_run
    _edit_config(run_dir, trust_remote_code=True)
    seen.clear()
    assert _resume(run_dir) == 2
    err = capsys.readouterr().err
    assert "asks for trust_remote_code" in err and "pass --trust-remote-code with --resume" in err
    assert "Traceback" not in err and seen == []  # refused before any model loaded
    assert _resume(run_dir, "--trust-remote-code") == 0
    assert seen and all(kw["trust_remote_code"] is True for kw in seen)


def test_the_flag_alone_decides_even_when_the_folder_says_false(stored_run):
    run_dir, seen = stored_run
    seen.clear()
    assert _resume(run_dir) == 0
    assert seen and all(kw["trust_remote_code"] is False for kw in seen)


def test_a_task_spec_outside_the_folder_must_be_confirmed_with_tasks(stored_run, tmp_path, capsys):
    run_dir, _ = stored_run
    spec = write_task(tmp_path / "elsewhere")
    _edit_config(run_dir, tasks=[str(spec)])
    assert _resume(run_dir) == 2
    err = capsys.readouterr().err
    assert f"loads task spec(s) '{spec}' from outside the run folder" in err and f"--tasks {spec}" in err
    assert _resume(run_dir, "--tasks", "toy-cls") == 2
    assert "differs from the run's stored" in capsys.readouterr().err
    args = bench.cli._parser().parse_args(["run", "--resume", str(run_dir), "--tasks", str(spec)])
    assert bench.run_flags.resume_config(args).tasks == [str(spec)]  # confirmed: accepted


def test_a_model_path_or_backend_mapping_from_the_folder_is_refused(stored_run, tmp_path, capsys):
    run_dir, seen = stored_run
    _edit_config(run_dir, models=[str(tmp_path / "evil-model")])
    seen.clear()
    assert _resume(run_dir) == 2
    assert "confirm with --model" in capsys.readouterr().err and seen == []
    remote = {"backend": "openai", "model": "m", "base_url": "http://203.0.113.9/v1", "label": "served"}
    _edit_config(run_dir, models=[remote])
    assert _resume(run_dir) == 2
    err = capsys.readouterr().err
    assert "203.0.113.9" in err and "confirm with --model served" in err
    local_with_key = {**remote, "base_url": "http://127.0.0.1:9/v1", "api_key_env": "OPENAI_API_KEY"}
    _edit_config(run_dir, models=[local_with_key])
    assert _resume(run_dir) == 2 and "confirm with --model served" in capsys.readouterr().err
    _edit_config(run_dir, models=[{**remote, "base_url": "http://127.0.0.1:9/v1"}])
    args = bench.cli._parser().parse_args(["run", "--resume", str(run_dir)])
    assert bench.run_flags.resume_config(args).models[0]["base_url"] == "http://127.0.0.1:9/v1"  # stays on this machine


def test_a_path_among_stored_strategy_options_is_refused(stored_run, capsys):
    run_dir, _ = stored_run
    _edit_config(run_dir, strategy_options={"rag": {"embedder": "/etc/some-model"}})
    assert _resume(run_dir) == 2
    assert "name the path '/etc/some-model' outside the run folder" in capsys.readouterr().err


def test_a_stored_out_folder_is_ignored(stored_run, tmp_path):
    run_dir, _ = stored_run
    _edit_config(run_dir, out=str(tmp_path / "somewhere-else"))
    assert _resume(run_dir) == 0
    assert not (tmp_path / "somewhere-else").exists()


def test_an_edited_row_with_a_recomputed_plain_checksum_is_caught(tmp_path):
    path = tmp_path / "rows.jsonl"
    jsonl.append(path, [{"cell": "c", "example_id": "e1", "score": 0.0}])
    line = json.loads(path.read_text())
    line["score"] = 1.0  # the forger recomputes the plain checksum, but cannot the keyed MAC
    body = {k: v for k, v in line.items() if not k.startswith("_")}
    line["_sha"] = jsonl._digest(jsonl._body(body))
    path.write_text(json.dumps(line) + "\n")
    result = jsonl.read(path)
    assert result.records == [] and result.bad == 1 and result.bad_cells == {"c": 1}


def test_a_colleagues_rows_are_used_but_counted_unsigned(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    monkeypatch.setenv("ADAPTBENCH_KEY_FILE", str(tmp_path / "colleague.key"))
    jsonl.append(path, [{"cell": "c", "example_id": "e1", "score": 1.0}])
    monkeypatch.setenv("ADAPTBENCH_KEY_FILE", str(tmp_path / "mine.key"))
    jsonl.append(tmp_path / "other.jsonl", [{"x": 1}])  # makes my key
    result = jsonl.read(path)
    assert result.records == [{"cell": "c", "example_id": "e1", "score": 1.0}] and result.unsigned == 1
    assert (tmp_path / "mine.key").stat().st_mode & 0o777 == 0o600


def test_a_deeply_nested_manifest_is_a_clear_error_for_resume_and_report(stored_run, capsys):
    run_dir, _ = stored_run
    (run_dir / "manifest.json").write_text('{"config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert _resume(run_dir) == 2
    assert "is damaged (nested deeper than 64 levels)" in capsys.readouterr().err
    assert bench.cli.main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json is not valid JSON (nested deeper than 64 levels)" in err and "Traceback" not in err

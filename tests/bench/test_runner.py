"""The runner over fakes: rows per cell, failures recorded, finished cells skipped."""
import json
import subprocess
import sys
import time

import pytest

import bench.backends
import tasks as tasks_pkg
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import read_jsonl
from fakes import FakeHandle, fake_definition, toy_classification, toy_qa
from strategies import STRATEGIES


class Boom:
    name = "boom"

    def prepare(self, task, model, budget):
        raise RuntimeError("planted failure")

    def predict(self, artifacts, examples, progress=None):
        raise AssertionError("never reached")


def build_boom(options):
    return Boom()


BOOM = fake_definition("boom", build_boom)


@pytest.fixture
def fake_world(monkeypatch):
    calls = {"load_lm": 0}

    def load_lm(spec, **kw):
        calls["load_lm"] += 1
        return FakeHandle(reply="blue")

    monkeypatch.setattr(bench.backends, "load_lm", load_lm)
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: {"toy-cls": toy_classification,
                                                                      "toy-qa": toy_qa}[name]())
    monkeypatch.setitem(STRATEGIES._table, "boom", f"{__name__}:BOOM")
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-qa", "fakes:toy_qa")
    return calls


def test_grid_rows_failures_and_resume(tmp_path, fake_world):
    cfg = RunConfig(tasks=["toy-cls", "toy-qa"], strategies=["prompting", "boom"], out=str(tmp_path),
                    name="r1", limit=3, seeds=[0, 1])
    run_dir = Runner(cfg, log=lambda *_: None).run()
    cells = read_jsonl(run_dir / "cells.jsonl")
    rows = read_jsonl(run_dir / "rows.jsonl")
    assert len(cells) == 2 * 2 * 2
    failed = [c for c in cells if c["status"] == "failed"]
    assert len(failed) == 4 and all("planted failure" in c["error"] for c in failed)
    assert len(rows) == 2 * 3 + 2 * 2  # ok cells x min(limit, test size); failed cells write none
    qa_rows = [r for r in rows if r["task"] == "toy-facts"]
    # FakeHandle answers "blue"; the toy QA test targets are orange / purple.
    assert all(r["output"] == "blue" and r["score"] == 0.0 for r in qa_rows)
    cls_rows = [r for r in rows if r["task"] == "toy-sentiment"]
    assert {r["output"] for r in cls_rows} == {"positive"}
    assert sum(r["score"] for r in cls_rows) == sum(r["target"] == "positive" for r in cls_rows)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["tasks"]["toy-sentiment"]["sizes"]["test"] == 8 and manifest["finished_at"]

    # The same run again: ok cells are skipped, failed ones retried.
    Runner(cfg, log=lambda *_: None).run()
    cells2 = read_jsonl(run_dir / "cells.jsonl")
    assert len(cells2) == len(cells) + 4
    assert len(read_jsonl(run_dir / "rows.jsonl")) == len(rows)


def test_unknown_strategy_fails_before_loading_the_model(tmp_path, fake_world):
    from bench.errors import BenchError

    cfg = RunConfig(tasks=["toy-cls"], strategies=["prompting", "lroa"], out=str(tmp_path), name="r2")
    with pytest.raises(BenchError, match="Did you mean 'lora'"):
        Runner(cfg, log=lambda *_: None).run()
    assert fake_world["load_lm"] == 0


def test_help_is_fast_and_imports_no_heavy_module():
    code = ("import sys, bench.cli\n"
            "try:\n    bench.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'faiss', 'peft', 'transformers', 'sentence_transformers') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert time.perf_counter() - start < 2.0
    assert "HEAVY []" in out.stdout and "run" in out.stdout


def test_cli_reports_user_errors_without_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--tasks", "sqaud", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown task 'sqaud'" in out.stderr and "Traceback" not in out.stderr


def test_cells_carry_a_batch1_probe_and_the_manifest_hashes(tmp_path, fake_world):
    cfg = RunConfig(tasks=["toy-cls"], strategies=["prompting"], out=str(tmp_path), name="r3", limit=4,
                    latency_sample=3, warmup=1, cost={"api_model": "gpt-4o"})
    run_dir = Runner(cfg, log=lambda *_: None).run()
    (cell,) = read_jsonl(run_dir / "cells.jsonl")
    probe = cell["latency"]["default"]
    assert probe["n"] == 3 and len(probe["samples_ms"]) == 3 and probe["latency_p50_ms"] > 0
    assert cell["latency"]["warmup_s"] >= 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["price_table_version"] and manifest["cost"] == {"api_model": "gpt-4o"}
    assert len(manifest["tasks"]["toy-sentiment"]["split_sha256"]["test"]) == 64
    rows = read_jsonl(run_dir / "rows.jsonl")
    assert all("retrieval_s" in r and "first_token_s" in r for r in rows)


def test_a_finished_run_continued_loads_no_model_and_keeps_its_manifest(tmp_path, fake_world):
    cfg = RunConfig(tasks=["toy-cls"], strategies=["prompting"], out=str(tmp_path), name="r4", limit=3,
                    latency_sample=0)
    run_dir = Runner(cfg, log=lambda *_: None).run()
    assert fake_world["load_lm"] == 1
    first = json.loads((run_dir / "manifest.json").read_text())
    logged = []
    Runner(cfg, log=logged.append).run()
    assert fake_world["load_lm"] == 1  # nothing left to compute: the weights stay on disk
    assert any("model not loaded" in line for line in logged)
    again = json.loads((run_dir / "manifest.json").read_text())
    assert again["models"] == first["models"] and again["models"]
    assert again["tasks"]["toy-sentiment"]["split_sha256"] == first["tasks"]["toy-sentiment"]["split_sha256"]
    assert len(read_jsonl(run_dir / "rows.jsonl")) == 3

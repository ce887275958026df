"""Whole runs on the openai backend against a real local server: faults retried to the
clean run's results, a killed server failing its cells clearly and `--resume` finishing
them, a wrong key or URL a clear error with the key nowhere in the run folder."""
import json
from pathlib import Path

import pytest

import bench.cli
import tasks as tasks_pkg
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import read_jsonl
from fake_openai import FakeOpenAIServer
from fakes import tiny_tokenizer, toy_classification, toy_qa
from proxy import Fault, FaultProxy

KEEP = ("cell", "example_id", "output", "score", "prompt_tokens", "completion_tokens", "scoring")


@pytest.fixture
def toy_tasks(monkeypatch):
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: {"toy-cls": toy_classification,
                                                                      "toy-qa": toy_qa}[name]())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-qa", "fakes:toy_qa")


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


def _config(tmp_path, name, url, tok_dir, **model):
    entry = {"backend": "openai", "model": "smol", "base_url": url, "tokenizer": tok_dir, "label": "served",
             "max_retries": 1, **model}
    return RunConfig(tasks=["toy-cls", "toy-qa"], strategies=["prompting"], models=[entry], out=str(tmp_path),
                     name=name, limit=8, checkpoint_every=3, latency_sample=0, warmup=0, cache=False,
                     max_context=256)


def _rows(run_dir):
    return sorted(tuple(r.get(k) for k in KEEP) for r in read_jsonl(Path(run_dir) / "rows.jsonl"))


def test_injected_faults_are_retried_and_the_results_equal_the_clean_run(tmp_path, toy_tasks, tok_dir):
    with FakeOpenAIServer() as server:
        clean = Runner(_config(tmp_path, "clean", server.url, tok_dir), log=lambda *_: None).run()
        faults = {4: Fault.status(429, retry_after=0), 6: Fault.status(503), 9: Fault.drop(),
                  13: Fault.status(502, retry_after=0), 15: Fault.drop()}
        with FaultProxy(server.url.removesuffix("/v1"), faults) as proxy:
            faulty = Runner(_config(tmp_path, "faulty", proxy.url + "/v1", tok_dir, max_retries=3),
                            log=lambda *_: None).run()
    cells = read_jsonl(faulty / "cells.jsonl")
    assert [c["status"] for c in cells] == ["ok", "ok"] and {c["backend"] for c in cells} == {"openai"}
    assert {c["task"]: c["scoring"] for c in cells} == {"toy-sentiment": "logprobs", "toy-facts": "generate"}
    assert _rows(faulty) == _rows(clean) and len(_rows(clean)) == 8 + 2
    assert sum(1 for *_, what in proxy.log if what != "forwarded") == 5
    manifest = json.loads((faulty / "manifest.json").read_text())
    model = manifest["models"]["served"]
    assert model["backend"] == "openai" and model["server"]["max_model_len"] == 2048
    assert model["spec"]["base_url"] == proxy.url + "/v1" and model["fingerprint"].startswith("openai:smol:")


def test_a_killed_server_fails_its_cells_clearly_and_resume_finishes_them(tmp_path, toy_tasks, tok_dir, capsys):
    with FakeOpenAIServer() as server:
        clean = Runner(_config(tmp_path, "clean", server.url, tok_dir), log=lambda *_: None).run()
    # Requests 1-2 check the model; 3-5 score the first chunk; the server dies inside the second.
    dying = FakeOpenAIServer(die_after=6)
    cfg = _config(tmp_path, "killed", dying.url, tok_dir)
    Runner(cfg, log=lambda *_: None).run()
    cells = read_jsonl(cfg.run_dir / "cells.jsonl")
    assert [c["status"] for c in cells] == ["failed", "failed"]
    for cell in cells:
        assert cell["error"].startswith(f"{dying.url}/") and "(model 'smol')" in cell["error"]
        assert "connection refused" in cell["error"] or "dropped" in cell["error"]
        assert "\n" not in cell["error"]
    with FakeOpenAIServer(port=dying.port):  # the server is back, at the same address
        assert bench.cli.main(["run", "--resume", str(cfg.run_dir)]) == 0
    final = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}
    assert [c["status"] for c in final.values()] == ["ok", "ok"]
    assert final["toy-sentiment|prompting|served|seed0"]["resumed_n"] == 3  # the checkpointed chunk
    assert _rows(cfg.run_dir) == _rows(clean)
    import csv

    with open(cfg.run_dir / "summary.csv", newline="") as fh:
        table = {r["task"]: r for r in csv.DictReader(fh) if r["status"] != "baseline"}  # trivial baselines
    assert {t: (r["backend"], r["scoring"]) for t, r in table.items()} == {
        "toy-sentiment": ("openai", "logprobs"), "toy-facts": ("openai", "generate")}


def _grep_run(run_dir: Path, secret: str) -> list[str]:
    return [str(p) for p in run_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_wrong_key_or_url_is_a_clear_error_and_the_key_is_nowhere_in_the_run(tmp_path, toy_tasks, tok_dir,
                                                                                 monkeypatch, capsys):
    key = "sk-fake-live-4f9c2b7e1d"
    config = tmp_path / "run.yaml"
    with FakeOpenAIServer(key=key) as server:
        config.write_text(
            "tasks: [toy-cls, toy-qa]\nstrategies: [prompting]\nlimit: 4\nlatency_sample: 2\nwarmup: 1\n"
            f"max_context: 256\nmodels:\n  - backend: openai\n    model: smol\n    base_url: {server.url}\n"
            f"    tokenizer: {tok_dir}\n    api_key_env: BENCH_SERVER_CRED\n")
        monkeypatch.setenv("BENCH_SERVER_CRED", key + "-typo")
        assert bench.cli.main(["run", str(config), "--out", str(tmp_path), "--name", "wrong-key"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "authentication failed (HTTP 401)" in err and server.url in err
        assert "BENCH_SERVER_CRED (api_key_env)" in err
        assert key not in err
        monkeypatch.setenv("BENCH_SERVER_CRED", key)
        assert bench.cli.main(["run", str(config), "--out", str(tmp_path), "--name", "right-key"]) == 0
        capsys.readouterr()
        port = server.port
    cells = read_jsonl(tmp_path / "right-key" / "cells.jsonl")
    assert [c["status"] for c in cells] == ["ok", "ok"]  # the key was used for real requests
    for name in ("wrong-key", "right-key"):
        assert _grep_run(tmp_path / name, key) == []
    config.write_text(config.read_text().replace(server.url, f"http://127.0.0.1:{port}/v1"))
    assert bench.cli.main(["run", str(config), "--out", str(tmp_path), "--name", "wrong-url"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"http://127.0.0.1:{port}/v1/models (model 'smol'): connection refused" in err and "\n" not in err

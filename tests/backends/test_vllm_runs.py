"""Whole `bench run`s against the session's real vLLM server: prompting, RAG and LoRA
cells finish (the adapter trained in-process on the same weights, served by vLLM); through a real fault proxy (tests/backends/proxy.py), injected 429/503 are retried to the clean run's rows; a
server that dies mid-cell fails the cell with a clear one-line error, and `--resume`
finishes it once the endpoint is back."""
from __future__ import annotations

from pathlib import Path

import pytest

import bench.cli
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import read_jsonl
from proxy import Fault, FaultProxy

pytestmark = pytest.mark.slow

KEEP = ("cell", "example_id", "output", "score", "prompt_tokens", "completion_tokens", "scoring")
QUIET = lambda *a, **k: None  # noqa: E731


def _config(tmp_path, name, vllm_lm, base_url, strategies=("prompting", "rag"), **model):
    entry = {"backend": "openai", "model": vllm_lm.options.model, "base_url": base_url, "label": "vllm",
             "tokenizer": vllm_lm.options.tokenizer, "adapters": True, "max_retries": 1, "max_connections": 4,
             **model}
    lora = {"max_steps": 2, "batch_size": 2, "eval_every": 2, "max_val_examples": 1, "max_length": 64,
            "max_train_examples": 8}
    return RunConfig(tasks=["rotten-tomatoes", "product-facts"], strategies=list(strategies), models=[entry],
                     out=str(tmp_path), name=name, limit=4, train_limit=32, checkpoint_every=2, latency_sample=0,
                     warmup=0, device="cpu", strategy_options={"lora": lora})  # indexes cached; predictions keyed by URL


def _rows(run_dir, strategies=("prompting", "rag")):
    return sorted(tuple(r.get(k) for k in KEEP) for r in read_jsonl(Path(run_dir) / "rows.jsonl")
                  if r["strategy"] in strategies)


@pytest.fixture(scope="module")
def clean_run(vllm_lm, tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm-runs")
    run_dir = Runner(_config(out, "clean", vllm_lm, vllm_lm.options.base_url,
                             strategies=("prompting", "rag", "lora")), log=QUIET).run()
    return out, run_dir


def test_prompting_rag_and_lora_cells_finish_on_the_engine(clean_run):
    _, run_dir = clean_run
    cells = read_jsonl(run_dir / "cells.jsonl")
    assert {(c["task"], c["strategy"]): c["status"] for c in cells} == {
        (t, s): "ok" for t in ("rotten-tomatoes", "product-facts") for s in ("prompting", "rag", "lora")}, \
        [c.get("error") for c in cells]
    assert {c["task"]: c["scoring"] for c in cells} == {"rotten-tomatoes": "logprobs", "product-facts": "generate"}
    rows = read_jsonl(run_dir / "rows.jsonl")
    assert len(rows) == 2 * 3 * 4 and all(r["latency_s"] > 0 and r["prompt_tokens"] > 0 for r in rows)
    lora = [c for c in cells if c["strategy"] == "lora"]
    assert all(c["info"].get("saved_bytes") or c["info"].get("adapter_sha256") for c in lora), lora


def test_injected_429_and_503_are_retried_to_the_clean_rows(vllm_lm, clean_run):
    out, clean = clean_run
    faults = {4: Fault.status(429, retry_after=0.2), 6: Fault.status(503), 9: Fault.status(503),
              12: Fault.status(429), 15: Fault.status(503, retry_after=0)}
    with FaultProxy(vllm_lm.options.base_url.removesuffix("/v1"), faults) as proxy:
        faulty = Runner(_config(out, "faulty", vllm_lm, proxy.url + "/v1", max_retries=3), log=QUIET).run()  # prompting, rag
    assert [c["status"] for c in read_jsonl(faulty / "cells.jsonl")] == ["ok"] * 4
    assert sum(1 for *_, what in proxy.log if what in ("429", "503")) == 5
    assert _rows(faulty) == _rows(clean)


def test_a_server_dying_mid_cell_fails_clearly_and_resume_finishes(vllm_lm, clean_run):
    out, clean = clean_run
    # Requests 1-2 check the server, 3-4 answer the first checkpoint (2 examples); from
    # request 5 on the endpoint answers nothing (connections closed, as when the process
    # is killed).
    dead = {n: Fault.drop() for n in range(5, 100_000)}
    upstream = vllm_lm.options.base_url.removesuffix("/v1")
    with FaultProxy(upstream, dead) as proxy:
        port = proxy.port
        cfg = _config(out, "killed", vllm_lm, proxy.url + "/v1", strategies=("prompting",))
        Runner(cfg, log=QUIET).run()
    cells = read_jsonl(cfg.run_dir / "cells.jsonl")
    assert [c["status"] for c in cells] == ["failed", "failed"]
    for cell in cells:
        assert cell["error"].startswith(f"http://127.0.0.1:{port}/v1/") and "(model 'smollm2-135m')" in cell["error"]
        assert "\n" not in cell["error"]
    with FaultProxy(upstream, port=port):  # the server is back, at the same address
        assert bench.cli.main(["run", "--resume", str(cfg.run_dir)]) == 0
    final = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}
    assert [c["status"] for c in final.values()] == ["ok", "ok"]
    assert final["rotten-tomatoes|prompting|vllm|seed0"]["resumed_n"] == 2
    assert _rows(cfg.run_dir) == [r for r in _rows(clean) if "|prompting|" in r[0]]

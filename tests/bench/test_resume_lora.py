"""The prepare checkpoint with a real weight-changing strategy: a tiny random Llama, a
2-step LoRA, `--no-cache`. The run dies in the next cell of the group after the LoRA
cell predicted; the resume reloads the adapter from the run folder for the probes
(the merged variant included) instead of training it again."""
import importlib.util
from pathlib import Path

import pytest

import strategies.prompting
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import RunStore, read_jsonl


class Killed(BaseException):
    """Stands in for SIGKILL."""


def _helpers():
    path = Path(__file__).parents[1] / "reliability" / "conftest.py"
    spec = importlib.util.spec_from_file_location("reliability_conftest_lora", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.save_tiny_lm, module.write_task


def test_a_killed_no_cache_run_reloads_the_trained_adapter_from_the_run_folder(tmp_path, monkeypatch):
    save_tiny_lm, write_task = _helpers()
    lm = save_tiny_lm(tmp_path / "tiny-lm")
    task = write_task(tmp_path / "data", n=30, name="mini")
    cfg = RunConfig(tasks=[str(task)], models=[str(lm)], device="cpu", limit=4, train_limit=8, checkpoint_every=2,
                    latency_sample=1, warmup=0, cache=False, out=str(tmp_path / "runs"), name="r",
                    strategies=[{"name": "lora", "max_steps": 1, "batch_size": 4, "max_val_examples": 2,
                                 "max_length": 64}, "prompting"])
    real = strategies.prompting.PromptingStrategy.predict

    def dying(self, artifacts, examples, progress=None):
        if len(examples) > 1:
            raise Killed
        return real(self, artifacts, examples, progress)

    monkeypatch.setattr(strategies.prompting.PromptingStrategy, "predict", dying)
    with pytest.raises(Killed):
        Runner(cfg, log=lambda *_: None).run()
    store = RunStore(cfg.run_dir)
    (lora,) = {e["cell"] for e in read_jsonl(cfg.run_dir / "events.jsonl") if "|lora|" in str(e.get("cell"))}
    rows_before = {r["example_id"]: r["output"] for r in store.read_partial(lora)}
    (ref,) = store.read_prepared(lora)
    assert len(rows_before) == 4 and any(name.endswith(".safetensors") for name in ref["sha256"])

    monkeypatch.setattr(strategies.prompting.PromptingStrategy, "predict", real)
    start = len(read_jsonl(cfg.run_dir / "events.jsonl"))
    Runner(cfg, log=lambda *_: None).run()
    assert not [e for e in read_jsonl(cfg.run_dir / "events.jsonl")[start:] if e.get("cell") == lora]  # no train, no predict
    record = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}[lora]
    assert record["status"] == "ok" and record["prepare_from"] == "checkpoint" and record["computed_n"] == 0
    assert record["info"]["weights_sha256"] == ref["info"]["weights_sha256"]
    assert record["latency"]["default"]["n"] == 1 and record["latency"]["merged"]["n"] == 1
    assert {r["example_id"]: r["output"] for r in RunStore(cfg.run_dir).read_rows() if r["cell"] == lora} == rows_before

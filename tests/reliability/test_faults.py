"""Resource faults: CUDA out-of-memory halves the batch (keeping the effective batch),
a NaN loss fails its cell and caches nothing, a missing GPU and a full disk stop with
a clear message and corrupt nothing."""
import errno
import os
import subprocess
import sys

import pytest
import torch

import bench.cli
import bench.backends
from bench import cache as cache_mod
from bench import jsonl
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import RunStore, read_jsonl
from conftest import CountingHandle, write_task
from fakes import toy_classification
from strategies import lora_data
from strategies.lora import build as build_lora
from strategies.base import Budget
from strategies.training import peft_state


def _oom_above(limit, calls):
    real = lora_data.batch_loss

    def batch_loss(model, batch, *args, **kw):
        calls.append(len(batch["input_ids"]))
        if len(batch["input_ids"]) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, batch, *args, **kw)

    return batch_loss


def _adapter(model_handle, task, **cfg):
    # fp32 matmuls: bf16 autocast (auto on a CPU with native bf16) rounds a cut batch
    # differently from a whole one, well above the float rounding compared below.
    strategy = build_lora(dict(dropout=0.0, batch_size=4, eval_every=10, max_length=64, max_val_examples=0,
                               forgetting=False, autocast="off", **cfg))
    artifacts = strategy.prepare(task, model_handle, Budget(seed=0))
    # PEFT's saved names: the same for two cells, whatever name each adapter has on the shared model.
    weights = {n: p.detach().clone() for n, p in peft_state(artifacts.state["model"].model).items()}
    return artifacts.info, weights


def test_oom_in_lora_training_halves_the_batch_and_keeps_the_effective_batch(tiny, monkeypatch):
    task = toy_classification()
    info_ok, weights_ok = _adapter(tiny, task)
    calls = []
    monkeypatch.setattr(lora_data, "batch_loss", _oom_above(1, calls))
    info, weights = _adapter(tiny, task)
    assert info["oom_retries"] == 2 and info["micro_batch_size"] == 1 and info["grad_accum_used"] == 4
    assert info["steps"] == info_ok["steps"] == 2 and info["tokens_seen"] == info_ok["tokens_seen"]
    # The same optimizer steps over the same examples: the same adapter, up to float rounding.
    for name, value in weights_ok.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-6)


class OomHandle(CountingHandle):
    def generate(self, prompts, max_new_tokens=32, batch_size=8, progress=None):
        if batch_size > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return super().generate(prompts, max_new_tokens, batch_size, progress)


def test_oom_in_generation_halves_the_prediction_batch(tmp_path, fake_world):
    fake_world["handle"] = lambda: OomHandle(calls=fake_world["calls"])
    cfg = RunConfig(tasks=["toy-qa"], strategies=["prompting"], out=str(tmp_path), name="oom", limit=4,
                    latency_sample=0, warmup=0, batch_size=8)
    run_dir = Runner(cfg, log=lambda *_: None).run()
    cell = read_jsonl(run_dir / "cells.jsonl")[0]
    assert cell["status"] == "ok" and cell["predict_batch_size_used"] == 2 and cell["predict_oom_retries"] == 2
    assert "batch halved to 2" in cell["notes"][-1]
    assert len(RunStore(run_dir).read_rows()) == 2


def test_nan_loss_fails_the_cell_and_caches_nothing(tmp_path, monkeypatch, tiny):
    import tasks as tasks_pkg

    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: tiny)
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: toy_classification())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    real = lora_data.batch_loss

    def nan_loss(model, batch, *args, **kw):
        loss, n = real(model, batch, *args, **kw)
        return loss * float("nan"), n

    monkeypatch.setattr(lora_data, "batch_loss", nan_loss)
    cfg = RunConfig(tasks=["toy-cls"], strategies=[{"name": "lora", "max_steps": 1, "max_val_examples": 0,
                                                           "max_length": 64}],
                    out=str(tmp_path), name="nan", limit=4, latency_sample=0, warmup=0)
    run_dir = Runner(cfg, log=lambda *_: None).run()
    cell = read_jsonl(run_dir / "cells.jsonl")[0]
    assert cell["status"] == "failed" and "diverged" in cell["error"]
    assert RunStore(run_dir).read_rows() == []
    assert not list(cache_mod.cache_dir("prepared").iterdir())
    assert not list(cache_mod.cache_dir("predictions").iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu_exits_non_zero_with_a_clear_message(tmp_path):
    spec = write_task(tmp_path / "task")
    out = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--tasks", str(spec), "--strategies",
                          "prompting", "--device", "cuda", "--out", str(tmp_path / "runs"), "--name", "x"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "--device cuda was asked for, but no CUDA GPU is visible" in out.stderr
    assert "Traceback" not in out.stderr


def test_full_disk_stops_the_run_clearly_and_corrupts_nothing(tmp_path, fake_world, capsys, monkeypatch):
    # A first, complete cell; then the disk fills while the second cell's rows are written.
    args = ["run", "--tasks", "toy-cls,toy-qa", "--strategies", "prompting", "--out", str(tmp_path),
            "--name", "full", "--limit", "4"]
    real_write, rows_writes = os.write, []

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("rows.jsonl"):
            rows_writes.append(1)
            if len(rows_writes) == 2:
                real_write(fd, bytes(data[:10]))
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(jsonl.os, "write", write)
    assert bench.cli.main(args) == 3
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "disk full while writing" in err and "rows.jsonl" in err and "Traceback" not in err
    run_dir = tmp_path / "full"
    for name in ("rows.jsonl", "cells.jsonl", "events.jsonl"):
        assert jsonl.read(run_dir / name).bad == 0
    assert [c["status"] for c in read_jsonl(run_dir / "cells.jsonl")] == ["ok"]
    assert len(RunStore(run_dir).read_rows()) == 4

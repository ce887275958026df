"""The Ray executor on a real local Ray cluster (no mocks): the same outputs as the
local executor, artifacts and hardware in the manifest, resume across executors, and
a worker killed with SIGKILL in the middle of a cell."""
import collections
import contextlib
import json
import os
import signal
import threading
import time

import pytest
import ray
import torch
from pathlib import Path

from bench.config import RunConfig
from bench.options import config_from
from bench.runner import Runner
from bench.store import RunStore, read_jsonl
from grids import outputs, small_grid

pytestmark = pytest.mark.slow  # a Ray cluster and real workers: seconds, not milliseconds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two CPUs, a small object store, no dashboard (token authentication is Ray's
    default for a local cluster from 2.59: it keeps its token under ~/.ray)."""
    ray.init(address="local", num_cpus=2, object_store_memory=128 * 2**20, include_dashboard=False, log_to_driver=False,
             namespace="adaptbench-tests")
    yield tmp_path_factory.mktemp("ray-grid")
    ray.shutdown()


def _config(folder, name, executor, **over):
    data = {**small_grid(folder, **{k: over.pop(k) for k in ("limit", "qa_tokens", "strategies") if k in over}),
            "out": str(folder / "runs"), "name": name, "executor": executor, **over}
    return config_from(RunConfig, data, "test")


@contextlib.contextmanager
def actor_threads():
    """The local side at a Ray actor's thread count: an actor of num_cpus=1 runs one torch
    thread (Ray sets OMP_NUM_THREADS), and on some CPUs (oneDNN/MKL on an Intel Xeon with
    AMX) a reduction's rounding depends on the thread count, so floats (embeddings, adapter
    weights) agree bit for bit only at equal counts (1.2e-7 apart at 2 threads against 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_local_and_ray_give_identical_outputs_and_the_manifest_lists_artifacts_and_hardware(cluster):
    with actor_threads():
        local = Runner(_config(cluster, "local", "local"), log=lambda *_: None).run()
    on_ray = Runner(_config(cluster, "ray", "ray"), log=lambda *_: None).run()
    rows_l, cells_l = outputs(local)
    rows_r, cells_r = outputs(on_ray)
    assert len(cells_l) == 6 and all(c["status"] == "ok" for c in cells_l.values())
    assert rows_r == rows_l and cells_r == cells_l  # outputs, scores, statuses, adapter and index hashes
    manifest = json.loads((on_ray / "manifest.json").read_text())
    assert manifest["executor"]["name"] == "ray" and manifest["executor"]["ray_version"] == ray.__version__
    assert manifest["executor"]["resources"]["CPU"] == 2 and manifest["executor"]["nodes"]
    assert set(manifest["cells"]) == set(cells_r) and manifest["finished_at"]
    for cell, entry in manifest["cells"].items():
        assert entry["hardware"]["device"] == "cpu" and entry["hardware"]["node"] and entry["executor"] == "ray"
    lora = [c for c in cells_r if "|lora|" in c]
    rag = [c for c in cells_r if "|rag|" in c]
    for cell in lora:  # the adapter came back from the worker into the driver's run folder
        adapter = manifest["artifacts"][cell]
        assert adapter["weights_sha256"] == cells_r[cell]["info"]["weights_sha256"]
        path = adapter["saved_path"]
        assert path.startswith(str(on_ray)) and any(p.suffix == ".safetensors" for p in Path(path).rglob("*"))
    assert all(manifest["artifacts"][c]["index_sha256"] for c in rag)


def test_resume_across_executors_never_reruns_a_finished_cell_nor_duplicates_a_row(cluster):
    grid = dict(strategies=["prompting", {"name": "prompting", "label": "p2", "shots": 2}], limit=8,
                ray={"workers": 1})
    for first, then in (("local", "ray"), ("ray", "local")):
        cfg = _config(cluster, f"{first}-then-{then}", first, **grid)
        run_dir = Runner(cfg, log=lambda *_: None).run()
        whole = outputs(run_dir)[0]
        # As if the run had died: two cell records lost, one of them with half its rows.
        cells = (run_dir / "cells.jsonl").read_text().splitlines(keepends=True)
        dropped = [json.loads(line)["cell"] for line in cells[2:]]
        (run_dir / "cells.jsonl").write_text("".join(cells[:2]))
        rows = (run_dir / "rows.jsonl").read_text().splitlines(keepends=True)
        cut = [i for i, line in enumerate(rows) if dropped[0] in line][4:]
        (run_dir / "rows.jsonl").write_text("".join(r for i, r in enumerate(rows) if i not in cut))
        events_before = len(read_jsonl(run_dir / "events.jsonl"))
        cfg.executor = then
        Runner(cfg, log=lambda *_: None).run()
        events = read_jsonl(run_dir / "events.jsonl")[events_before:]
        predicted = collections.Counter(i for e in events if e["event"] == "predict" for i in e["ids"])
        assert {e["cell"] for e in events if e["event"] == "predict"} == {dropped[0]}  # nothing else predicted
        assert sum(predicted.values()) == len(cut)
        raw = collections.Counter((r["cell"], r["example_id"]) for r in read_jsonl(run_dir / "rows.jsonl"))
        assert set(raw.values()) == {1}  # no row written twice
        got = {k: (v["output"], v["score"]) for k, v in outputs(run_dir)[0].items()}
        assert got == {k: (v["output"], v["score"]) for k, v in whole.items()}
        assert json.loads((run_dir / "manifest.json").read_text())["finished_at"]


def _kill_mid_cell(run_dir, result, timeout=90.0):
    """Wait for a cell's second predict chunk, then SIGKILL the worker process running it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and "done" not in result:
        path = run_dir / "events.jsonl"
        chunks = collections.defaultdict(list)
        for e in read_jsonl(path) if path.exists() else []:
            if e["event"] == "predict":
                chunks[e["cell"]].append(e["pid"])
        for cell, pids in chunks.items():
            if len(pids) >= 2:
                os.kill(pids[-1], signal.SIGKILL)
                return cell, pids[-1]
        time.sleep(0.01)
    raise AssertionError("no cell reached its second chunk")


@pytest.mark.parametrize("retries", [2, 0])
def test_a_worker_killed_mid_cell_is_retried_or_recorded_failed(cluster, retries):
    cfg = _config(cluster, f"killed-{retries}", "ray", limit=12, qa_tokens=32,
                  strategies=["prompting", {"name": "prompting", "label": "p2", "shots": 2}],
                  ray={"max_retries": retries})
    cfg.tasks = [t for t in cfg.tasks if t.endswith("qa.yaml")]
    result = {}
    thread = threading.Thread(target=lambda: result.update(done=Runner(cfg, log=lambda *_: None).run()))
    thread.start()
    cell, pid = _kill_mid_cell(cfg.run_dir, result)
    thread.join(180)
    assert result.get("done") == cfg.run_dir
    cells = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}
    raw = collections.Counter((r["cell"], r["example_id"]) for r in read_jsonl(cfg.run_dir / "rows.jsonl"))
    assert set(raw.values()) == {1}  # no duplicate rows
    other = next(c for c in cells if c != cell)
    assert cells[other]["status"] == "ok" and sum(1 for k in raw if k[0] == other) == 12
    if retries:
        killed = cells[cell]
        assert killed["status"] == "ok" and killed["attempts"] == 2
        assert sum(1 for k in raw if k[0] == cell) == 12  # none missing
        assert killed["resumed_n"] >= 2 and killed["resumed_n"] + killed["computed_n"] == 12  # chunks kept
        pids = {e["pid"] for e in read_jsonl(cfg.run_dir / "events.jsonl") if e.get("cell") == cell}
        assert pid in pids and len(pids) == 2  # the retry ran on a fresh worker
    else:
        assert cells[cell]["status"] == "failed" and "Ray worker died 1 time(s)" in cells[cell]["error"]
        assert len(RunStore(cfg.run_dir).read_partial(cell)) >= 2  # its chunks wait for a resume


def test_the_embedded_model_gives_the_same_cells_locally_and_on_ray(cluster):
    """SmolLM2-135M (the embedded default), tiny limits: prompting and a 1-step LoRA."""
    over = dict(limit=3, strategies=["prompting", {"name": "lora", "max_steps": 1, "batch_size": 2,
                                                   "max_length": 64, "max_val_examples": 0}],
                models=["smollm2-135m"], latency_sample=0, warmup=0, ray={"workers": 1})
    runs = []
    for executor in ("local", "ray"):
        cfg = _config(cluster, f"embedded-{executor}", executor, **over)
        cfg.tasks = cfg.tasks[:1]
        with actor_threads() if executor == "local" else contextlib.nullcontext():
            runs.append(outputs(Runner(cfg, log=lambda *_: None).run()))
    (rows_l, cells_l), (rows_r, cells_r) = runs
    assert len(rows_l) == 2 * 3 and all(c["status"] == "ok" for c in cells_l.values())
    assert rows_r == rows_l and cells_r == cells_l

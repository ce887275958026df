"""`bench run --executor ray --ray-address HOST:PORT` against a real cluster: a head
and a second worker node started with `ray start` on 127.0.0.1, with token
authentication, stopped by their process group when the test ends."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.store import read_jsonl
from grids import small_grid

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, env, log):
    return subprocess.Popen([RAY, "start", *args, "--block", "--disable-usage-stats"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc) -> None:
    with_group = [proc.pid]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in with_group:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


def _nodes(address, env) -> int:
    out = subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True,
                         timeout=60)
    active = out.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return active.count("node_") if out.returncode == 0 else 0


def test_bench_run_joins_a_cluster_of_two_nodes_started_with_ray_start(tmp_path):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "adaptbench-" + os.urandom(12).hex(),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    store = str(100 * 2**20)
    with open(tmp_path / "ray.log", "w") as log:
        head = _start(["--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                       "--include-dashboard=false", f"--object-store-memory={store}"], env, log)
        node = None
        try:
            deadline = time.monotonic() + 90
            while _nodes(address, env) < 1 and time.monotonic() < deadline:
                time.sleep(1)
            node = _start([f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                           f"--object-store-memory={store}"], env, log)
            while _nodes(address, env) < 2 and time.monotonic() < deadline:
                time.sleep(1)
            cfg = small_grid(tmp_path, limit=4, strategies=["prompting", {"name": "prompting", "label": "p2",
                                                                          "shots": 2}])
            cfg["tasks"] = cfg["tasks"][:1]
            (tmp_path / "run.json").write_text(json.dumps(cfg))
            out = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(tmp_path / "run.json"), "--out",
                                  str(tmp_path / "runs"), "--name", "cluster", "--executor", "ray",
                                  "--ray-address", address], env=env, capture_output=True, text=True, timeout=300)
        finally:
            for proc in (node, head):
                if proc is not None:
                    _stop(proc)
    assert out.returncode == 0, out.stderr[-3000:] + (tmp_path / "ray.log").read_text()[-2000:]
    run_dir = tmp_path / "runs" / "cluster"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["executor"]["name"] == "ray" and len(manifest["executor"]["nodes"]) == 2
    assert manifest["executor"]["resources"]["CPU"] == 2
    cells = read_jsonl(run_dir / "cells.jsonl")
    assert [c["status"] for c in cells] == ["ok", "ok"] and manifest["finished_at"]
    assert all(manifest["cells"][c["cell"]]["hardware"]["node"] for c in cells)
    assert env["RAY_AUTH_TOKEN"] not in (run_dir / "manifest.json").read_text()


def test_ctrl_c_stops_the_workers_and_leaves_a_folder_that_resumes(tmp_path):
    """SIGINT to `bench run --executor ray` mid-cell: exit 130, the actors are gone, the
    chunks received are kept; `--resume` (here on the local executor) finishes the rest."""
    cfg = small_grid(tmp_path, limit=12, qa_tokens=32,
                     strategies=["prompting", {"name": "prompting", "label": "p2", "shots": 2}])
    cfg.update(tasks=cfg["tasks"][1:], executor="ray", ray={"num_cpus": 2, "object_store_memory": 100 * 2**20})
    (tmp_path / "run.json").write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run_dir = tmp_path / "runs" / "stopped"
    cli = [sys.executable, "-m", "bench.cli", "run"]
    proc = subprocess.Popen(cli + [str(tmp_path / "run.json"), "--out", str(tmp_path / "runs"), "--name", "stopped"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, pids = time.monotonic() + 240, set()
    while time.monotonic() < deadline and proc.poll() is None:
        events = read_jsonl(run_dir / "events.jsonl") if (run_dir / "events.jsonl").exists() else []
        chunks = [e for e in events if e["event"] == "predict"]
        if len(chunks) >= 2:
            pids = {e["pid"] for e in events}
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    time.sleep(2)
    assert pids and not any(os.path.exists(f"/proc/{pid}") for pid in pids)  # no worker left behind
    assert not json.loads((run_dir / "manifest.json").read_text()).get("finished_at")
    # The task spec and the model lie outside the run folder: a resume confirms them (issue 15)
    again = subprocess.run(cli + ["--resume", str(run_dir), "--executor", "local", "--tasks", cfg["tasks"][0],
                                  "--model", cfg["models"][0]],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    raw = [(r["cell"], r["example_id"]) for r in read_jsonl(run_dir / "rows.jsonl")]
    assert len(raw) == len(set(raw)) == 2 * 12
    cells = read_jsonl(run_dir / "cells.jsonl")
    assert all(c["status"] == "ok" for c in cells) and sum(c["resumed_n"] for c in cells) >= 2

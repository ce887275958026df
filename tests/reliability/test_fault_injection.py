"""Fault injection: a real multi-cell run through the CLI, on a tiny randomly
initialised causal LM saved as safetensors, killed with SIGKILL at seeded random
points and resumed with `bench run --resume`; its rows must equal an uninterrupted
run's. Prints the figures: kill points, cells and examples recomputed, match."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from bench.store import RunStore, read_jsonl
from conftest import save_tiny_lm, write_task

pytestmark = pytest.mark.slow

KILLS = 6
SEED = 20261122


def _qa_task(folder):
    facts = [("Zorblat", "blue"), ("Quenix", "green"), ("Vartop", "red"), ("Mildrun", "yellow"), ("Trosk", "black")]
    rows = [{"id": f"q{i}", "input": f"What colour is the {name} gadget, version {i}?", "target": colour}
            for i in range(30) for name, colour in [facts[i % len(facts)]]]
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "qa.yaml").write_text("name: gadgets\nkind: qa\ntrain: qa.jsonl\nmax_new_tokens: 4\n"
                                    "split: {ratios: [0.5, 0.1, 0.4], seed: 0}\n")
    return folder / "qa.yaml"


def _config(tmp_path):
    lm = save_tiny_lm(tmp_path / "tiny-lm")
    cls = write_task(tmp_path / "data", n=30, name="mini")
    qa = _qa_task(tmp_path / "data")
    cfg = {"tasks": [str(cls), str(qa)], "models": [str(lm)], "device": "cpu", "limit": 12, "train_limit": 12,
           "checkpoint_every": 3, "latency_sample": 0, "warmup": 0,
           "strategies": ["prompting", {"name": "prompting", "label": "prompting-2shot", "shots": 2},
                          {"name": "lora", "max_steps": 2, "batch_size": 4, "max_val_examples": 4,
                           "max_length": 96}]}
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _env(cache):
    return {**os.environ, "ADAPTBENCH_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1"}


def _events(run_dir):
    path = run_dir / "events.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _results(run_dir):
    return {(r["cell"], r["example_id"]): (r["output"], r["score"]) for r in RunStore(run_dir).read_rows()}


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    config, out = _config(tmp_path), tmp_path / "runs"
    cli = [sys.executable, "-m", "bench.cli", "run"]
    whole = subprocess.run(cli + [str(config), "--out", str(out), "--name", "whole"], env=_env(tmp_path / "cache-a"),
                           capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]

    rng, run_dir, kills, finished_early = random.Random(SEED), out / "killed", [], 0
    # Task specs and model live outside the run folder, which is untrusted: --resume needs them confirmed.
    stored = json.loads(config.read_text())
    resume = ["--resume", str(run_dir), "--tasks", ",".join(stored["tasks"]), "--model", ",".join(stored["models"])]
    for attempt in range(KILLS):
        args = [str(config), "--out", str(out), "--name", "killed"] if attempt == 0 else resume
        before, target, delay = _events(run_dir), rng.randint(1, 4), rng.uniform(0.0, 0.4)
        proc = subprocess.Popen(cli + args, env=_env(tmp_path / "cache-b"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _events(run_dir) < before + target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append((target, round(delay, 3)))
        else:
            finished_early += 1
        proc.wait()
    final = subprocess.run(cli + resume, env=_env(tmp_path / "cache-b"), capture_output=True,
                           text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]

    events = read_jsonl(run_dir / "events.jsonl")
    prepares = Counter(e["cell"] for e in events if e["event"] == "prepare")
    predicted = Counter((e["cell"], i) for e in events if e["event"] == "predict" for i in e["ids"])
    pids = {}
    for e in events:
        pids.setdefault(e["cell"], set()).add(e["pid"])
    expected, got = _results(out / "whole"), _results(run_dir)
    cells = read_jsonl(run_dir / "cells.jsonl")
    figures = {"kill_points": len(kills), "kills_at": kills, "runs_finished_before_kill": finished_early,
               "cells": len({c["cell"] for c in cells}), "examples": len(expected),
               "cells_resumed_across_processes": sum(len(p) > 1 for p in pids.values()),
               "cells_prepare_recomputed": sum(n - 1 for n in prepares.values()),
               "lora_trainings_recomputed": sum(n - 1 for c, n in prepares.items() if "|lora|" in c),
               "examples_predicted": sum(predicted.values()),
               "examples_recomputed": sum(n - 1 for n in predicted.values()),
               "adapters_from_cache": sum(bool(c.get("prepare_cached")) for c in cells if c["status"] == "ok"),
               "results_match": got == expected}
    print("\nFAULT-INJECTION FIGURES " + json.dumps(figures))
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    assert figures["cells"] == 6 and all(c["status"] == "ok" for c in cells)
    assert len(kills) >= 3  # the kills really happened, mid-run
    assert set(got) == set(expected) and len(expected) == 6 * 12
    assert got == expected
    # Nothing finished is predicted twice: only examples of a chunk in flight at a kill run again.
    assert figures["examples_recomputed"] <= 3 * len(kills)

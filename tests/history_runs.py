"""Planted finished run folders for the history tests, written through `RunStore` as
the runner would: one classification task, two strategies, 40 examples, a manifest
with a finish time, a git commit and a config."""
from __future__ import annotations

from pathlib import Path

from bench.store import RunStore, cell_id

TASK, MODEL, N = "planted", "tiny-llama", 40
# run name -> (finish time, commit, {strategy: correct answers out of N})
RUNS = {
    "run-1": ("2026-11-01T10:00:00+00:00", "1111111aaaa", {"prompting": 12, "rag": 38}),
    "run-2": ("2026-11-08T10:00:00+00:00", "2222222bbbb", {"prompting": 36, "rag": 38}),
    "run-3": ("2026-11-15T10:00:00+00:00", "3333333cccc", {"prompting": 35, "rag": 16}),
}
# What `bench history` must say per cell, oldest first.
DIRECTIONS = {"prompting": ["–", "better", "same"], "rag": ["–", "same", "worse"]}


def plant_run(root: Path, name: str, finished: str | None, commit: str, correct: dict[str, int],
              history: dict | None = None) -> Path:
    store = RunStore(root)
    for strategy, right in correct.items():
        cell = cell_id(TASK, strategy, MODEL, 0)
        store.append_rows([{"cell": cell, "task": TASK, "strategy": strategy, "model": MODEL, "seed": 0,
                            "example_id": f"p{i}", "input": f"q{i}", "target": "yes",
                            "output": "yes" if i < right else "no", "score": float(i < right),
                            "latency_s": 0.01 * (i + 1) * (3 if strategy == "rag" else 1), "prompt_tokens": 10,
                            "completion_tokens": 1, "truncated": False} for i in range(N)])
        store.append_cell({"cell": cell, "task": TASK, "strategy": strategy, "model": MODEL, "seed": 0,
                           "status": "ok", "metric": "accuracy", "n": N, "prepare_s": 60.0, "predict_s": 4.0,
                           "peak_memory_mb": 900.0, "device": "cuda", "info": {}})
    manifest = {"run": name, "created_at": finished, "git": {"commit": commit, "dirty": False},
                "hardware": {"gpu": "NVIDIA H100 80GB HBM3", "cpu_count": 16},
                "config": {"tasks": [TASK], "limit": N, "name": name, "out": str(root.parent),
                           "history": history or {}}}
    if finished:
        manifest["finished_at"] = finished
    store.write_json("manifest.json", manifest)
    return root


def plant_all(parent: Path, history: dict | None = None) -> dict[str, Path]:
    return {name: plant_run(parent / name, name, finished, commit, correct, history)
            for name, (finished, commit, correct) in RUNS.items()}

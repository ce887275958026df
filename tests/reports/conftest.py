"""A synthetic run folder written through `bench.store.RunStore`, as the runner would.

Two tasks x three strategies, seed-averaged prompting, one failed cell, a LoRA loss
curve, RAG retrieval facts, and hostile strings in inputs, outputs and a task name.
"""
from __future__ import annotations

import pytest

from bench.store import RunStore, cell_id

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
SENTIMENT = "sentiment"
QA = f"qa{XSS_SCRIPT}"
MODEL = "tiny-llama"

# (task, strategy, seed) -> per-example (score, latency_s, prompt_tokens)
PLAN = {
    (SENTIMENT, "prompting", 0): [(1, 0.10, 50), (0, 0.20, 52), (1, 0.30, 54), (1, 0.40, 56), (0, 1.00, 58)],
    (SENTIMENT, "prompting", 1): [(1, 0.12, 50), (1, 0.22, 52), (1, 0.32, 54), (0, 0.42, 56), (0, 0.90, 58)],
    (SENTIMENT, "rag", 0): [(1, 0.50, 300), (1, 0.60, 310), (1, 0.70, 320), (1, 0.80, 330), (0, 2.00, 340)],
    (SENTIMENT, "lora", 0): [(1, 0.05, 20), (1, 0.06, 20), (1, 0.07, 20), (1, 0.08, 20), (1, 0.09, 20)],
    (QA, "prompting", 0): [(0, 0.3, 80), (1, 0.4, 80), (0, 0.5, 80)],
    (QA, "rag", 0): [(1, 0.9, 400), (1, 1.1, 420), (0, 1.3, 440)],
}
FAILED = (QA, "lora", 0)
FAILED_ERROR = f"CUDA out of memory {XSS_IMG}"
LOSS_CURVE = [{"step": 0, "train_loss": 2.5, "val_loss": 2.6}, {"step": 10, "train_loss": 1.2, "val_loss": 1.5},
              {"step": 20, "train_loss": 0.7, "val_loss": 1.6}]


def build_run(root) -> RunStore:
    store = RunStore(root)
    for (task, strategy, seed), plan in PLAN.items():
        cell = cell_id(task, strategy, MODEL, seed)
        rows = []
        for i, (score, latency, prompt_tokens) in enumerate(plan):
            output = XSS_IMG if i == 0 else (XSS_SCRIPT if i == 1 else f"answer {i}")
            row = {"cell": cell, "task": task, "strategy": strategy, "model": MODEL, "seed": seed,
                   "example_id": f"ex{i}", "input": f"input {i} {XSS_SCRIPT} " + "x" * 500,
                   "target": ["answer", XSS_IMG] if task == QA else "positive", "output": output,
                   "score": float(score), "exact_match": None, "f1": None, "latency_s": latency,
                   "prompt_tokens": prompt_tokens, "completion_tokens": 3, "retrieved_ids": [],
                   "recall_at_k": None, "truncated": i == 4}
            if task == QA:
                row["exact_match"], row["f1"] = float(score), 0.5 + score / 2
            if strategy == "rag":
                row["retrieved_ids"], row["recall_at_k"] = [f"doc{i}", "doc9"], float(i % 2)
            rows.append(row)
        store.append_rows(rows)
        info = {}
        if strategy == "lora":
            info = {"loss_curve": LOSS_CURVE, "trainable_params": 12345}
        if strategy == "rag":
            info = {"index_type": "flat", "n_chunks": 12, "embedder": f"hash {XSS_SCRIPT}"}
        store.append_cell({"cell": cell, "task": task, "strategy": strategy, "model": MODEL, "seed": seed,
                           "status": "ok", "error": None, "metric": "exact_match" if task == QA else "accuracy",
                           "n": len(plan), "prepare_s": 1.5 + seed, "predict_s": 2.0, "peak_memory_mb": 512.0,
                           "device": "cpu", "started_at": "2024-06-01T10:00:00", "finished_at": None,
                           "info": info})
    task, strategy, seed = FAILED
    store.append_cell({"cell": cell_id(task, strategy, MODEL, seed), "task": task, "strategy": strategy,
                       "model": MODEL, "seed": seed, "status": "failed", "error": FAILED_ERROR,
                       "metric": "exact_match", "n": 0, "prepare_s": None, "predict_s": None,
                       "peak_memory_mb": None, "device": "cpu", "started_at": None, "finished_at": None,
                       "info": {}})
    store.write_json("manifest.json", {"name": "synthetic", "started_at": "2024-06-01T10:00:00",
                                       "config": {"note": XSS_SCRIPT}})
    return store


@pytest.fixture
def run_dir(tmp_path):
    root = tmp_path / "run"
    build_run(root)
    return root


# A run with known answers for intervals, paired tests and costs: one classification
# task, 40 examples, one seed, on an H100 priced from bench.cost.
PLANTED = "planted"
PLANTED_N = 40
H100_GPU = "NVIDIA H100 80GB HBM3"
# strategy -> (prepare_s, predict_s); per-query latency is predict_s / n.
PLANTED_TIMES = {"prompting": (0.0, 40.0), "rag": (360.0, 4.0), "lora": (3600.0, 20.0)}


def planted_output(strategy: str, i: int, target: str) -> str:
    """lora is always right; rag misses ex0 (wrong label) and ex1 (an off-label answer),
    so it ties with lora; prompting is right on ex0-ex9 only, a clear difference."""
    flipped = "no" if target == "yes" else "yes"
    if strategy == "rag" and i < 2:
        return flipped if i == 0 else "maybe"
    if strategy == "prompting" and i >= 10:
        return flipped
    return target


def build_planted_run(root) -> RunStore:
    store = RunStore(root)
    for strategy, (prepare_s, predict_s) in PLANTED_TIMES.items():
        cell = cell_id(PLANTED, strategy, MODEL, 0)
        rows = []
        for i in range(PLANTED_N):
            target = "yes" if i % 2 == 0 else "no"
            output = planted_output(strategy, i, target)
            rows.append({"cell": cell, "task": PLANTED, "strategy": strategy, "model": MODEL, "seed": 0,
                         "example_id": f"p{i}", "input": f"q{i}", "target": target, "output": output,
                         "score": float(output == target), "latency_s": predict_s / PLANTED_N,
                         "prompt_tokens": 10, "completion_tokens": 1, "truncated": False})
        store.append_rows(rows)
        store.append_cell({"cell": cell, "task": PLANTED, "strategy": strategy, "model": MODEL, "seed": 0,
                           "status": "ok", "metric": "accuracy", "n": PLANTED_N, "prepare_s": prepare_s,
                           "predict_s": predict_s, "peak_memory_mb": 900.0, "device": "cuda", "info": {}})
    store.write_json("manifest.json", {"name": "planted", "hardware": {"gpu": H100_GPU, "cpu_count": 16}})
    return store


@pytest.fixture
def planted_dir(tmp_path):
    root = tmp_path / "planted"
    build_planted_run(root)
    return root

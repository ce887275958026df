"""Planted run folders for the decision tests: one task, strategies with a known score
(right on the first `right` of 100 examples), batch-1 probes around a known latency,
and a known cost per query (pinned $3.60/h = $0.001/s: cost per 1,000 queries =
predict_s / 100 examples x $1)."""
from __future__ import annotations

import numpy as np

from bench.store import RunStore, cell_id

MODEL = "tiny"
N, PROBES = 100, 32
# strategy -> (right of N, probe centre ms, predict_s, prepare_s)
# At 1,000,000 queries a month: prompting $50, rag $80 + $0.03, lora $100 + $0.30 amortised.
PLAN = {"prompting": (50, 100.0, 5.0, 0.0), "rag": (90, 500.0, 8.0, 360.0), "lora": (90, 150.0, 10.0, 3600.0)}
CONSTRAINTS = {"min_score": 0.7, "max_p95_ms": 300, "monthly_queries": 1_000_000, "max_monthly_usd": 150}


def build(root, plan=None, decide=None, task: str = "t") -> RunStore:
    store = RunStore(root)
    z = np.random.default_rng(3).normal(0.0, 1.0, PROBES)
    ids = [f"e{i}" for i in range(PROBES)]
    for strategy, (right, centre, predict_s, prepare_s) in (plan or PLAN).items():
        cell = cell_id(task, strategy, MODEL, 0)
        store.append_rows([{"cell": cell, "task": task, "strategy": strategy, "model": MODEL, "seed": 0,
                            "example_id": f"e{i}", "input": f"q{i}", "target": "a",
                            "output": "a" if i < right else "b", "score": float(i < right),
                            "latency_s": predict_s / N, "prompt_tokens": 30, "completion_tokens": 2}
                           for i in range(N)])
        samples = (centre * (1.0 + 0.08 * z)).round(3).tolist()
        probe = {"default": {"n": PROBES, "samples_ms": samples, "query_ids": ids, "interleaved": True,
                             "latency_p50_ms": float(np.median(samples)),
                             "latency_p95_ms": float(np.percentile(samples, 95))}}
        store.append_cell({"cell": cell, "task": task, "strategy": strategy, "model": MODEL, "seed": 0,
                           "status": "ok", "metric": "accuracy", "n": N, "prepare_s": prepare_s,
                           "predict_s": predict_s, "device": "cpu", "info": {}, "latency": probe})
    manifest = {"name": "decide", "cost": {"usd_per_hour": 3.6}, "hardware": {"cpu_count": 2}}
    if decide is not None:
        manifest["config"] = {"decide": decide}
    store.write_json("manifest.json", manifest)
    return store

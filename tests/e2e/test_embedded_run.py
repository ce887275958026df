"""The whole bench, through the CLI, on the real embedded model with small limits:
four built-in tasks x prompting, RAG and LoRA, then the report re-rendered from rows."""
import csv
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

TASKS = ["rotten-tomatoes", "bbc-news", "squad", "product-facts"]
STRATEGIES = ["prompting", "rag", "lora"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cmd = [sys.executable, "-m", "bench.cli", "run", "--tasks", ",".join(TASKS), "--strategies",
           ",".join(STRATEGIES), "--limit", "6", "--train-limit", "64", "--out", str(out), "--name", "e2e",
           # Small but real: every LoRA step, evaluation and RAG prompt runs the embedded model on
           # 2 CPU cores, so batches, validation and demonstrations are kept few to stay within CI.
           "--set", "lora.max_steps=3", "--set", "lora.eval_every=2", "--set", "lora.max_length=128",
           "--set", "lora.batch_size=2", "--set", "lora.max_val_examples=4", "--set", "rag.demos_k=1",
           "--latency-sample", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "e2e"


def test_every_cell_ran_and_was_summarised(run_dir):
    with open(run_dir / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    summary = [r for r in rows if r["status"] != "baseline"]
    # The trivial baselines follow each task's strategies.
    assert {(r["task"], r["strategy"]) for r in rows if r["status"] == "baseline"} == {
        (t, b) for t in ("rotten-tomatoes", "bbc-news") for b in ("majority-class", "uniform-random")} | {
        (t, b) for t in ("squad", "product-facts") for b in ("empty-answer", "top-train-answer")}
    assert {(r["task"], r["strategy"]) for r in summary} == {(t, s) for t in
                                                             ["rotten-tomatoes", "bbc-news", "squad", "product-facts"]
                                                             for s in STRATEGIES}
    for row in summary:
        assert row["status"] == "ok", row
        assert int(float(row["n"])) == 6
        assert 0.0 <= float(row["score"]) <= 1.0
        assert float(row["latency_p50_ms"]) > 0 and float(row["prepare_s"]) >= 0
        assert float(row["prompt_tokens_mean"]) > 0 and float(row["peak_memory_mb"]) > 100
        # Latency is the batch-1 probe's, measured live; LoRA also has its merged-adapter number.
        assert row["latency_mode"] == "batch-1" and float(row["latency_p99_ms"]) >= float(row["latency_p50_ms"])
        assert float(row["ttft_p50_ms"]) > 0 and float(row["cost_per_1k_usd"]) > 0
        if row["strategy"] == "lora":
            assert float(row["merged_latency_p50_ms"]) > 0
        if row["strategy"] == "rag":
            assert 0 < float(row["retrieval_share"]) < 1


def test_rows_hold_real_outputs_and_retrieval(run_dir):
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 3 * 6
    squad_rag = [r for r in rows if r["task"] == "squad" and r["strategy"] == "rag"]
    assert all(r["retrieved_ids"] for r in squad_rag)
    assert all(r["recall_at_k"] in (0.0, 1.0) for r in squad_rag)
    generated = [r["output"] for r in rows if r["task"] == "squad"]
    assert any(o.strip() for o in generated)
    cls = [r for r in rows if r["task"] == "rotten-tomatoes"]
    assert {r["output"] for r in cls} <= {"fresh", "rotten"}
    # RAG's prompts carry passages, so they are longer than closed-book prompting's.
    mean = lambda s: sum(r["prompt_tokens"] for r in rows if r["task"] == "squad" and r["strategy"] == s) / 6
    assert mean("rag") > 2 * mean("prompting")


def test_lora_cell_records_training(run_dir):
    cells = [json.loads(line) for line in (run_dir / "cells.jsonl").read_text().splitlines()]
    lora = [c for c in cells if c["strategy"] == "lora"]
    assert len(lora) == 4
    for cell in lora:
        info = cell["info"]
        assert info["steps"] == 3 and info["trainable_params"] > 0 and info["loss_curve"]
        assert (run_dir / "artifacts").exists()
    assert list((run_dir / "artifacts").rglob("adapter_model.safetensors"))


def test_manifest_and_report(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["packages"]["torch"] and manifest["models"]["smollm2-135m"]["fingerprint"]
    assert set(manifest["tasks"]) == set(TASKS)
    html = (run_dir / "report.html").read_text()
    assert "<svg" in html and "product-facts" in html
    (run_dir / "report.html").unlink()
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(run_dir)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "report.html").exists()

"""`bench perf --gpu --baseline` end to end on a tiny saved model: on CPU up to the
device boundary (no MFU or bandwidth bound for a CPU), and for real on a GPU."""
import json

import pytest

from bench.perf_gpu import run_gpu_suite


@pytest.fixture
def tiny_folder(tiny, tmp_path):
    folder = tmp_path / "tiny-model"
    tiny.model.save_pretrained(folder, safe_serialization=True)
    tiny.tokenizer.save_pretrained(folder)
    return str(folder)


def test_gpu_suite_dry_run_on_cpu(tiny_folder, tmp_path):
    results = run_gpu_suite(tiny_folder, "cpu", baseline=True, quick=True, out=tmp_path / "out", steps=2)
    rows = {r.case: r for r in results}
    assert {"gpu training", "MFU (bench)", "MFU (HF)", "decode batch-1"} <= set(rows)
    assert rows["gpu training"].value > 0 and "val loss" in rows["gpu training"].agree
    assert rows["MFU (bench)"].value is None  # no peak FLOP/s for a CPU: never a guess
    data = json.loads((tmp_path / "out" / "perf.json").read_text())
    assert data["environment"]["suite"] == "gpu" and data["environment"]["hf"]["tokens_seen"] > 0
    assert data["cases"][0]["details"]["packing"] is False  # packing is automatic on CUDA only


@pytest.mark.gpu
def test_gpu_suite_on_cuda(tiny_folder, tmp_path):
    results = {r.case: r for r in run_gpu_suite(tiny_folder, "cuda", baseline=True, quick=True, steps=4)}
    assert results["gpu training"].details["packing"] is True
    assert results["gpu peak memory"].value > 0 and results["decode batch-1"].optimised

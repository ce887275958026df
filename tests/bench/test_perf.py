"""`bench perf`: the probe, the result table and files, the GPU arithmetic, and the
cases themselves on the tiny model (the embedded-model run is the slow e2e test)."""
import json
import math

import pytest

from bench.perf import CaseResult, Probe, ratio_result, to_markdown, write_results
from bench.perf_cases import PerfContext, ann_recall_case, generation_case, training_case
from bench.perf_gpu import (BANDWIDTH_BYTES, PEAK_BF16_FLOPS, compare, decode_bound, eval_loss, gpu_key,
                            hf_trainer, mfu)
from fakes import toy_qa


class Inner:
    def work(self):
        return 1


class Outer(Inner):
    def run(self, inner):
        return inner.work() + 1


def test_probe_counts_nested_calls_once_and_restores_everything():
    probe = Probe()
    with probe:
        probe.wrap(Outer, "run", "outer")
        probe.wrap(Inner, "work", "inner")
        probe.wrap(Outer, "work", "inherited")  # Outer only inherits work
        assert Outer().run(Inner()) == 2 and Inner().work() == 1
    assert probe.calls == {"outer": 1, "inner": 1}  # the work inside run is run's time
    assert "work" not in vars(Outer) and not hasattr(Inner.work, "_perf_probe")
    assert not hasattr(Outer.run, "_perf_probe")


def test_ratio_result_passes_only_when_fast_enough_and_in_agreement():
    assert ratio_result("x", 9.0, 3.0, 3.0).passed
    assert not ratio_result("x", 8.9, 3.0, 3.0).passed
    assert not ratio_result("x", 90.0, 3.0, 3.0, details={"agreed": False}).passed
    assert ratio_result("x", 9.0, 3.0, 3.0).shown_value() == "3.00x"
    assert CaseResult("s", "share", 0.083, "<= 10%", True).shown_value() == "8.3%"


def test_results_are_written_as_json_and_markdown(tmp_path):
    results = [ratio_result("generation", 10.0, 2.5, 3.0, agree="4/4 identical"),
               CaseResult("harness overhead", "of run", 0.25, "<= 10%", False, note="a | pipe")]
    write_results(results, tmp_path, {"at": "now", "cpus": 2})
    data = json.loads((tmp_path / "perf.json").read_text())
    assert [c["case"] for c in data["cases"]] == ["generation", "harness overhead"]
    assert data["cases"][0]["value"] == 4.0 and data["cases"][0]["passed"] is True
    md = (tmp_path / "perf.md").read_text()
    assert "| generation |" in md and "4.00x" in md and "FAIL" in md and "a \\| pipe" in md
    assert md == to_markdown(results, {"at": "now", "cpus": 2})


# -- GPU arithmetic, against hand-computed values -------------------------------------
def test_mfu_and_decode_bound_by_hand():
    # 10,000 tok/s x 4 x 135e6 FLOPs = 5.4e12 FLOP/s; of 989e12 that is 0.546%.
    assert mfu(10_000, 135_000_000, 989e12) == pytest.approx(5.4e12 / 989e12)
    # 3.35e12 B/s / (2 B x 135e6) = 12,407.4 tok/s.
    assert decode_bound(135_000_000, 3.35e12) == pytest.approx(12_407.407, rel=1e-6)
    assert decode_bound(500_000_000, 2.0e12, bytes_per_param=4) == pytest.approx(1_000.0)


@pytest.mark.parametrize("name, flops, bandwidth", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe", "H100 PCIe"),
    ("NVIDIA H200", "H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100", "A100 80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100", "A100"), ("Tesla T4", None, None)])
def test_gpu_names_map_to_datasheet_rows(name, flops, bandwidth):
    assert gpu_key(name, PEAK_BF16_FLOPS) == flops and gpu_key(name, BANDWIDTH_BYTES) == bandwidth


def test_gpu_table_rows_from_measurements():
    bench = {"tokens_per_s": 30_000.0, "peak_mb": 600.0}
    hf = {"tokens_per_s": 15_000.0, "peak_mb": 1_000.0}
    rows = {r.case: r for r in compare(bench, hf, (2.00, 2.01), 135_000_000, "NVIDIA H100 80GB HBM3", 300.0, 2)}
    assert rows["gpu training"].value == pytest.approx(2.0) and rows["gpu training"].passed
    assert rows["gpu peak memory"].value == pytest.approx(0.6) and rows["gpu peak memory"].passed
    assert rows["MFU (bench)"].value == pytest.approx(30_000 * 4 * 135e6 / 989e12)
    assert rows["decode batch-1"].value == pytest.approx(300.0 / 12_407.407, rel=1e-5)
    worse = {r.case: r for r in compare(bench, hf, (2.00, 2.10), 135_000_000, "Tesla T4", 300.0, 2)}
    assert not worse["gpu training"].passed  # 4.8% apart in loss
    assert worse["MFU (bench)"].value is None and worse["decode batch-1"].value is None


def test_hf_trainer_baseline_trains_on_cpu(tiny):
    from strategies.lora_data import encode_examples

    task = toy_qa()
    seqs = encode_examples(tiny, task, task.train, 64)
    run = hf_trainer(tiny, seqs, steps=2, batch_size=2, grad_accum=1, max_length=64, lr=0.05)
    model = run.pop("model")
    assert run["tokens_per_s"] > 0 and math.isfinite(run["final_train_loss"])
    assert run["tokens_seen"] == sum(len(s.ids) for s in seqs)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.detach().abs().sum()) > 0 for p in lora_b)  # B starts at zero: it trained
    assert math.isfinite(eval_loss(model, seqs, "cpu"))
    assert not any("lora" in n for n, _ in tiny.model.named_modules())  # on a copy


# -- the cases on the tiny model ------------------------------------------------------
@pytest.fixture
def ctx(tiny, tmp_path):
    context = PerfContext(handle=tiny, quick=True, workdir=tmp_path)
    context._tasks["product-facts"] = toy_qa()
    return context


def test_generation_case_agrees_with_the_per_example_loop(ctx):
    result = generation_case(ctx, n_prompts=4, batch_size=4, max_new_tokens=4)
    assert result.agree == "4/4 identical" and result.details["agreed"]
    assert result.value == pytest.approx(result.details["loop_s"] / result.details["batched_s"])


def test_training_case_compares_the_same_training(ctx):
    result = training_case(ctx, steps=1, learning_rate=0.05)
    padded, dynamic = result.details["padded"], result.details["dynamic"]
    assert padded["tokens_seen"] == dynamic["tokens_seen"] > 0 and padded["steps"] == dynamic["steps"] == 1
    assert result.details["val_loss_gap"] < 1e-3


def test_ann_case_uses_the_index_rag_would_build(ctx):
    result = ann_recall_case(ctx, n=3_000, n_queries=100)
    assert result.details["index"] == "hnsw" and result.value >= 0.95 and result.passed


def test_an_unknown_case_is_an_error_before_any_work(capsys):
    from bench.cli import main

    assert main(["perf", "--only", "generaton", "--out", "unused"]) == 2
    assert "unknown case(s) ['generaton']" in capsys.readouterr().err

"""The memory case of `bench perf` on the tiny model: its cells attach to and leave the
shared model, and the row reports what it measured."""
from bench.backends import shared_adapters
from bench.perf_cases import PerfContext
from bench.perf_memory import memory_case
from fakes import tiny_handle, toy_classification


def test_memory_case_runs_adapter_cells_on_the_shared_model_and_leaves_none(tmp_path):
    handle = tiny_handle(seed=5)
    ctx = PerfContext(handle=handle, quick=True, workdir=tmp_path)
    ctx._tasks["rotten-tomatoes"] = toy_classification()
    result = memory_case(ctx, cells=2)
    d = result.details
    assert len(d["peaks_mb"]) == 2 and len(d["after_mb"]) == 2 and d["copy_cell_peak_mb"] > 0
    assert d["left_attached"] == [] and shared_adapters.attached(handle.model) == []
    assert result.value == (max(d["peaks_mb"][1:]) - d["peaks_mb"][0]) / d["peaks_mb"][0]
    assert result.passed == (result.value < 0.10)

"""The memory case of `bench perf` on the tiny model: its cells attach to and leave the
shared model, are released as the executor releases a cell, and the row reports growth
per method beside the overall figure."""
import pytest

from bench.backends import shared_adapters
from bench.perf_cases import PerfContext
from bench.perf_memory import growth, memory_case, memory_case_fresh
from bench.resources import release_memory
from fakes import tiny_handle, toy_classification


def test_memory_case_runs_adapter_cells_on_the_shared_model_and_leaves_none(tmp_path):
    handle = tiny_handle(seed=5)
    ctx = PerfContext(handle=handle, quick=True, workdir=tmp_path)
    ctx._tasks["rotten-tomatoes"] = toy_classification()
    result = memory_case(ctx, cells=4)
    d = result.details
    assert d["methods"] == ["lora", "dora", "ia3", "lora"]
    assert len(d["peaks_mb"]) == 4 and len(d["after_mb"]) == 4 and d["copy_cell_peak_mb"] > 0
    assert d["left_attached"] == [] and shared_adapters.attached(handle.model) == []
    lora = d["per_method"]["lora"]
    assert lora["first_mb"] == d["peaks_mb"][0] and lora["later_max_mb"] == d["peaks_mb"][3]
    assert d["per_method"]["dora"]["growth"] is None  # one dora cell: nothing to compare it with
    assert d["overall_growth"] == (max(d["peaks_mb"][1:]) - d["peaks_mb"][0]) / d["peaks_mb"][0]
    assert result.value == max(d["worst_method_growth"], d["after_release_growth"])
    assert result.passed == (result.value < 0.10)


@pytest.mark.slow
def test_bench_perf_runs_the_memory_case_in_a_fresh_process_on_the_embedded_model(tmp_path):
    import os

    result = memory_case_fresh(PerfContext(quick=True, workdir=tmp_path), cells=2)
    d = result.details
    assert d["pid"] != os.getpid() and "in a fresh process" in result.note
    assert d["methods"] == ["lora", "dora"] and len(d["peaks_mb"]) == 2
    assert d["model_mb"] > 400  # the child loaded SmolLM2-135M itself (513 MB in fp32), not the tiny model
    assert d["left_attached"] == [] and result.passed == (result.value < 0.10)


def test_a_failed_fresh_memory_process_is_a_failed_row_that_says_why(tmp_path):
    result = memory_case_fresh(PerfContext(quick=True, workdir=tmp_path), cells=0)  # no cell to measure
    assert result.passed is False and result.value is None
    assert "exit 1" in result.note and "Error" in result.note


def test_growth_is_per_method_and_overall():
    # A method with a larger working set is not growth; its own later cells growing is.
    g = growth([100, 150, 90, 101, 150, 90], ["lora", "dora", "ia3"] * 2)
    assert g["overall"] == pytest.approx(0.5)
    assert g["per_method"]["lora"]["growth"] == pytest.approx(0.01)
    assert g["per_method"]["dora"]["growth"] == pytest.approx(0.0) and g["worst"] == pytest.approx(0.01)
    g = growth([100, 150, 90, 130, 150, 90], ["lora", "dora", "ia3"] * 2)
    assert g["worst"] == pytest.approx(0.30) and g["per_method"]["lora"]["later_max_mb"] == 130


TRIM_SCRIPT = """
import ctypes, psutil
from bench.resources import release_memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 * 1024 - 64  # below glibc's mmap threshold: from the heap
blocks, pins = [], []
for _ in range(4000):  # ~256 MB, a small block after each keeps them apart and off the heap's top
    blocks.append(libc.malloc(size))
    ctypes.memset(blocks[-1], 1, size)
    pins.append(libc.malloc(64))
for b in blocks:
    libc.free(b)
held = psutil.Process().memory_info().rss
print(release_memory(), held - psutil.Process().memory_info().rss)
"""


def test_release_memory_hands_freed_heap_back_on_glibc():
    """Freed blocks in the middle of the heap stay in RSS until trimmed (a fresh
    interpreter, so the test process's own heap does not decide the layout)."""
    import ctypes
    import os
    import subprocess
    import sys

    pytest.importorskip("psutil")
    if not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL("libc.so.6"), "malloc_trim"):
        assert release_memory() is False
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, env=env, check=True)
    trimmed, released = out.stdout.split()
    assert trimmed == "True" and int(released) > 100 * 2**20


PIN_SCRIPT = """
import ctypes, json, sys
from bench.resources import pin_allocator
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
pinned = pin_allocator() if sys.argv[1] == "pin" else {}
def mmapped(size):  # whether a block of this size gets its own mmap
    before = libc.mallinfo2().hblks
    p = libc.malloc(size)
    now = libc.mallinfo2().hblks
    libc.free(p)
    return now > before
first = mmapped(4 * 2**20)
big = libc.malloc(24 * 2**20)  # a large block freed, as a DoRA cell frees its dense weights
libc.free(big)
print(json.dumps({"pinned": pinned, "before": first, "after": mmapped(4 * 2**20)}))
"""


@pytest.mark.parametrize("mode", ["dynamic", "pin", "user", "opt-out"])
def test_pinned_allocator_places_blocks_the_same_whatever_was_freed_before(mode):
    """glibc's dynamic mmap threshold moves a 4 MB block from mmap to the heap once a 24 MB
    block was freed (so a cell's peak depends on the cells before it); pinned, it does not
    move; a user's MALLOC_MMAP_THRESHOLD_ is left to glibc and reported, and so is
    ADAPTBENCH_MALLOC=dynamic (the dynamic rule, as without the pin)."""
    import ctypes
    import json
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"):
        pytest.skip("glibc >= 2.33 only (mallinfo2)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "ADAPTBENCH_MALLOC"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    if mode == "user":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    if mode == "opt-out":
        env["ADAPTBENCH_MALLOC"] = "dynamic"
    out = subprocess.run([sys.executable, "-c", PIN_SCRIPT, "none" if mode == "dynamic" else "pin"],
                         capture_output=True, text=True, env=env, check=True)
    got = json.loads(out.stdout)
    if mode in ("dynamic", "opt-out"):
        assert got["before"] is True and got["after"] is False
        if mode == "opt-out":
            assert got["pinned"]["set_by"].startswith("ADAPTBENCH_MALLOC=dynamic")
    elif mode == "pin":
        assert got["pinned"]["set_by"] == "bench" and got["pinned"]["mmap_threshold"] == 32 * 2**20
        assert got["before"] is got["after"] is False
    else:
        assert got["pinned"] == {"allocator": "glibc", "set_by": "environment", "MALLOC_MMAP_THRESHOLD_": "65536"}
        assert got["before"] is got["after"] is True

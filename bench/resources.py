"""Peak memory of a phase: process RSS sampled by a thread, and CUDA's own counter."""
from __future__ import annotations

import threading
import time


class PeakMemory:
    """`with PeakMemory() as peak: ...` then `peak.rss_mb`, `peak.gpu_mb` (None on CPU)."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.rss_mb = 0.0
        self.gpu_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while True:
            self.rss_mb = max(self.rss_mb, proc.memory_info().rss / 2**20)
            if self._stop.wait(self.interval_s):
                break

    def __enter__(self) -> "PeakMemory":
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        except ImportError:
            pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        try:
            import torch

            if torch.cuda.is_available():
                self.gpu_mb = torch.cuda.max_memory_allocated() / 2**20
        except ImportError:
            pass


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


class EnergyMeter:
    """GPU energy of a phase from NVML's cumulative counter (Volta and later), in
    joules; `joules` stays None on CPU, without the `nvidia-ml-py` package, or where the
    driver does not expose the counter. Never a guess from TDP."""

    def __init__(self, device: str, index: int = 0) -> None:
        self.device, self.index = device, index
        self.joules: float | None = None
        self._handle = None
        self._start_mj: int | None = None

    def __enter__(self) -> "EnergyMeter":
        if not str(self.device).startswith("cuda"):
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self._start_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception:  # no package, no driver, or a GPU without the counter
            self._handle = None
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is None or self._start_mj is None:
            return
        try:
            import pynvml

            end_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self.joules = (end_mj - self._start_mj) / 1000.0
        except Exception:
            self.joules = None


# glibc's mallopt parameters (malloc.h) and the values pinned: the largest the dynamic
# mmap threshold can reach on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX) and twice it for the
# trim threshold, which is where glibc's own rule puts them once a large block is freed.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_pinned: dict | None = None


def _libc():
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # musl and other libcs have neither
    except (OSError, AttributeError):
        return None
    return libc


def pin_allocator() -> dict:
    """Fix glibc's mmap and trim thresholds for this process (once; before the model loads).

    By default glibc raises its mmap threshold to the size of the largest mmapped block
    freed so far, so once a cell frees large tensors (DoRA's dense weights for its norms)
    every later allocation below that size comes from the heap, and a LoRA cell after a
    DoRA cell peaks 13% higher than the same cell before it. Pinned at the values the
    dynamic rule ends at, peaks no longer depend on which cells ran before, and tensors
    keep being reused from the heap (no fresh mmap and page faults each). A user's own
    MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ wins, and ADAPTBENCH_MALLOC=dynamic
    leaves glibc's dynamic rule (about 3% faster wall time in a measured run, peaks that
    depend on cell order). Returns what holds, for the record."""
    import os

    global _pinned
    if _pinned is not None:
        return _pinned
    mine = {k: os.environ[k] for k in _ENV if k in os.environ}
    libc = _libc()
    if os.environ.get("ADAPTBENCH_MALLOC") == "dynamic":  # speed over predictable peaks (~3%)
        _pinned = {"allocator": "glibc", "set_by": "ADAPTBENCH_MALLOC=dynamic: glibc's dynamic thresholds"}
    elif mine:
        _pinned = {"allocator": "glibc", "set_by": "environment", **mine}
    elif libc is None:
        _pinned = {"allocator": "not glibc: thresholds left as they are"}
    else:
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        _pinned = {"allocator": "glibc", "set_by": "bench", "mmap_threshold": MMAP_THRESHOLD,
                   "trim_threshold": TRIM_THRESHOLD} if ok else {"allocator": "glibc", "set_by": "mallopt refused"}
    return _pinned


def release_memory() -> bool:
    """After a cell is dropped: collect its cycles, then hand the heap memory glibc keeps
    for reuse back to the system (`malloc_trim(0)`; freed tensors of a large working
    set, such as DoRA's weight norms, otherwise stay in RSS for the rest of the run).
    True when the trim ran (glibc only; a no-op elsewhere)."""
    import ctypes
    import gc

    gc.collect()
    libc = _libc()
    if libc is None:
        return False
    trim = libc.malloc_trim
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True

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


def release_memory() -> bool:
    """After a cell is dropped: collect its cycles, then hand the heap memory glibc keeps
    for reuse back to the system (`malloc_trim(0)`; freed tensors of a large working
    set, such as DoRA's weight norms, otherwise stay in RSS for the rest of the run).
    True when the trim ran (glibc only; a no-op elsewhere)."""
    import ctypes
    import ctypes.util
    import gc
    import sys

    gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and other libcs have no malloc_trim
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True

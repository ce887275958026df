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

"""The test run's one vLLM server: started right after collection (when any selected test
uses it), so its minutes of start-up overlap the other tests; waited for by the
`vllm_server` fixture; stopped at the end of the session.

Without the vLLM venv the tests that need it are skipped with the reason, except under
CI, where a missing venv is a failure (`make test` builds it)."""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

FIXTURE = "vllm_lm"
# Enough for a loaded 2-core machine (~4 min alone; several helpers' tests beside it).
STARTUP_TIMEOUT_S = float(os.environ.get("ADAPTBENCH_VLLM_TIMEOUT", "1500"))


class SessionServer:
    def __init__(self) -> None:
        self.lm = None
        self.error: BaseException | None = None
        self.skip_reason: str | None = None
        self._thread: threading.Thread | None = None
        self.log_dir: Path | None = None  # made when a server starts (kept: its log)

    def begin(self) -> None:
        from bench.vllm_server import venv_dir, vllm_python

        if vllm_python() is None:
            reason = f"the vLLM venv is absent ({venv_dir()}); build it with `make vllm`"
            if os.environ.get("CI"):
                self.error = RuntimeError(f"CI is set but {reason}: `make test` must build it")
            else:
                self.skip_reason = reason
            return
        self.log_dir = Path(tempfile.mkdtemp(prefix="adaptbench-vllm-test-"))
        self._thread = threading.Thread(target=self._start, name="vllm-session-server", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        """Through the managed backend entry itself: the server every vLLM test talks to
        is the one `{backend: vllm, model: smollm2-135m, enable_lora: true}` starts."""
        try:
            from bench.backends import ModelSpec, load_lm

            entry = {"backend": "vllm", "model": "smollm2-135m", "enable_lora": True,
                     "startup_timeout_s": STARTUP_TIMEOUT_S}
            self.lm = load_lm(ModelSpec.parse(entry, "the test session's vLLM server"), device="cpu",
                              log=lambda *a, **k: None, run_dir=self.log_dir)
        except BaseException as exc:  # reported to the tests that need the server
            self.error = exc

    def get(self):
        if self.skip_reason:
            pytest.skip(self.skip_reason)
        if self._thread is not None:
            t0 = time.monotonic()
            self._thread.join(STARTUP_TIMEOUT_S + 120)
            waited = time.monotonic() - t0
            if waited > 1 and self.lm is not None:
                print(f"\n[vllm] waited {waited:.0f} s more for the session server "
                      f"(start-up {self.lm.extra['server_startup_s']:.0f} s)")
        if self.error is not None:
            pytest.fail(f"the session's vLLM server did not start: {self.error}", pytrace=False)
        if self.lm is None:
            pytest.fail(f"the session's vLLM server is not ready; log {self.log_dir / 'vllm-server.log'}",
                        pytrace=False)
        return self.lm

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(1)
        if self.lm is not None:
            from bench.backends import close_lm

            close_lm(self.lm)  # stops the server (SIGTERM, then SIGKILL, to its process group)


SESSION = SessionServer()


def wanted(items) -> bool:
    return any(FIXTURE in getattr(item, "fixturenames", ()) for item in items)


def last(items) -> list:
    """The tests that wait for the server run after every other test (stable order)."""
    return sorted(items, key=lambda item: FIXTURE in getattr(item, "fixturenames", ()))

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

FIXTURE = "vllm_server"
# Enough for a loaded 2-core machine (~4 min alone; several helpers' tests beside it).
STARTUP_TIMEOUT_S = float(os.environ.get("ADAPTBENCH_VLLM_TIMEOUT", "1500"))


class SessionServer:
    def __init__(self) -> None:
        self.server = None
        self.error: BaseException | None = None
        self.skip_reason: str | None = None
        self._thread: threading.Thread | None = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="adaptbench-vllm-test-"))

    def begin(self) -> None:
        from bench.vllm_server import venv_dir, vllm_python

        if vllm_python() is None:
            reason = f"the vLLM venv is absent ({venv_dir()}); build it with `make vllm`"
            if os.environ.get("CI"):
                self.error = RuntimeError(f"CI is set but {reason}: `make test` must build it")
            else:
                self.skip_reason = reason
            return
        self._thread = threading.Thread(target=self._start, name="vllm-session-server", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            from bench.backends.vllm import served_model_folder
            from bench.vllm_server import VLLMOptions, VLLMServer

            folder = served_model_folder("smollm2-135m", log=lambda *a, **k: None)
            options = VLLMOptions(model=str(folder), served_name="smollm2-135m", enable_lora=True,
                                  max_lora_rank=16, dtype="float32", startup_timeout_s=STARTUP_TIMEOUT_S)
            self.server = VLLMServer(options, self.log_dir / "vllm-server.log").start()
            self.server.wait()
        except BaseException as exc:  # reported to the tests that need the server
            self.error = exc

    def get(self):
        if self.skip_reason:
            pytest.skip(self.skip_reason)
        if self._thread is not None:
            t0 = time.monotonic()
            self._thread.join(STARTUP_TIMEOUT_S + 120)
            waited = time.monotonic() - t0
            if waited > 1:
                print(f"\n[vllm] waited {waited:.0f} s more for the session server "
                      f"(start-up {getattr(self.server, 'startup_s', None) or 0:.0f} s)")
        if self.error is not None:
            pytest.fail(f"the session's vLLM server did not start: {self.error}", pytrace=False)
        if self.server is None or not self.server.ready():
            pytest.fail(f"the session's vLLM server is not ready; log {self.log_dir / 'vllm-server.log'}",
                        pytrace=False)
        return self.server

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(1)
        if self.server is not None:
            self.server.stop()


SESSION = SessionServer()


def wanted(items) -> bool:
    return any(FIXTURE in getattr(item, "fixturenames", ()) for item in items)


def last(items) -> list:
    """The tests that wait for the server run after every other test (stable order)."""
    return sorted(items, key=lambda item: FIXTURE in getattr(item, "fixturenames", ()))

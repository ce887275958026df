"""VLLMServer's lifecycle against stand-in processes (no vLLM needed): the failure paths,
the stop by process group, the options. The real server is tested in test_vllm_engine.py."""
from __future__ import annotations

import http.server
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.vllm_server import VLLMOptions, VLLMServer, free_port


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    return folder


def test_options_argv_and_env(model_dir):
    opts = VLLMOptions(model=str(model_dir), served_name="smol", enable_lora=True, max_lora_rank=8,
                       lora_modules={"a": "/x/a"}, dtype="float32", kv_cache_space_gib=3,
                       extra_args=["--seed", 1])
    argv = opts.argv(1234)
    assert argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "1234"
    assert argv[argv.index("--max-lora-rank") + 1] == "8" and "a=/x/a" in argv and argv[-2:] == ["--seed", "1"]
    env = opts.env()
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3" and env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "PYTHONPATH" not in env and env["HF_HUB_OFFLINE"] == "1"


def test_bad_options_are_clear(tmp_path, model_dir):
    with pytest.raises(BenchError, match="not a local folder"):
        VLLMOptions(model=str(tmp_path / "missing"))
    with pytest.raises(BenchError, match="max_model_len"):
        VLLMOptions(model=str(model_dir), max_model_len=0)
    with pytest.raises(BenchError, match="needs enable_lora"):
        VLLMOptions(model=str(model_dir), lora_modules={"a": "/x"})


def test_missing_venv_says_make_vllm(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_VLLM_VENV", str(tmp_path / "no-venv"))
    with pytest.raises(BenchError, match="make vllm"):
        VLLMServer(VLLMOptions(model=str(model_dir)), tmp_path / "log").start()


def test_server_that_dies_shows_its_log(tmp_path, model_dir):
    python = _script(tmp_path, 'echo "ValueError: no such architecture FooForCausalLM"\nexit 3\n')
    server = VLLMServer(VLLMOptions(model=str(model_dir)), tmp_path / "run" / "vllm-server.log", python=python)
    with pytest.raises(BenchError) as err:
        server.wait(timeout_s=30, poll_s=0.1)
    assert "exited with code 3" in str(err.value) and "FooForCausalLM" in str(err.value)
    assert str(tmp_path / "run" / "vllm-server.log") in str(err.value)


def test_timeout_stops_the_whole_process_group(tmp_path, model_dir):
    # The stand-in starts a child (as vLLM starts its engine core) and never answers.
    pid_file = tmp_path / "child.pid"
    python = _script(tmp_path, f'sleep 300 &\necho $! > {pid_file}\necho "loading weights"\nwait\n')
    server = VLLMServer(VLLMOptions(model=str(model_dir)), tmp_path / "log", python=python)
    t0 = time.monotonic()
    with pytest.raises(BenchError, match="(?s)not ready .* after 2 s.*loading weights"):
        server.wait(timeout_s=2, poll_s=0.1)
    assert time.monotonic() - t0 < 30
    child = int(pid_file.read_text())
    assert server.process is None
    for _ in range(50):  # SIGKILL is asynchronous
        if not _running(child):
            break
        time.sleep(0.1)
    assert not _running(child), "the server's child process outlived stop()"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_ready_waits_for_the_served_model_then_warms_up(tmp_path, model_dir):
    """A stand-in OpenAI server: /v1/models lists the model only from the third poll."""
    polls, posts = [], []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            polls.append(self.path)
            data = [{"id": "smol"}] if len(polls) >= 3 else []
            self._send({"object": "list", "data": data})

        def do_POST(self):
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self._send({"choices": [{"text": "!"}]})

        def _send(self, body):
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    python = _script(tmp_path, "exec sleep 300\n")
    server = VLLMServer(VLLMOptions(model=str(model_dir), served_name="smol"), tmp_path / "log", port=port,
                        python=python)
    try:
        with server:
            assert len(polls) >= 3 and posts and posts[0]["model"] == "smol" and posts[0]["echo"] is True
            assert server.startup_s is not None and server.alive()
            proc = server.process
        assert server.process is None and proc.poll() is not None
    finally:
        httpd.shutdown()
        server.stop()


def test_ctrl_c_while_waiting_stops_the_server(tmp_path, model_dir, monkeypatch):
    python = _script(tmp_path, "exec sleep 300\n")
    server = VLLMServer(VLLMOptions(model=str(model_dir)), tmp_path / "log", python=python)
    monkeypatch.setattr(server, "ready", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        with server:
            pass
    assert server.process is None


def test_adapter_needs_lora_and_a_peft_folder(tmp_path, model_dir):
    plain = VLLMServer(VLLMOptions(model=str(model_dir)), tmp_path / "log")
    with pytest.raises(BenchError, match="without enable_lora"):
        plain.load_lora_adapter("a", tmp_path)
    lora = VLLMServer(VLLMOptions(model=str(model_dir), enable_lora=True), tmp_path / "log")
    with pytest.raises(BenchError, match="not a PEFT adapter folder"):
        lora.load_lora_adapter("a", tmp_path)


assert sys.platform != "win32"  # process groups: POSIX only


def test_a_killed_bench_leaves_no_server_behind(tmp_path, model_dir):
    """SIGKILL gives the bench no chance to call stop(): the orphan guard must."""
    import signal
    import subprocess

    pid_file = tmp_path / "server.pid"
    python = _script(tmp_path, f'echo $$ > {pid_file}\nexec sleep 300\n')
    bench = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from bench.vllm_server import VLLMOptions, VLLMServer\n"
        f"s = VLLMServer(VLLMOptions(model={str(model_dir)!r}), {str(tmp_path / 'log')!r}, python={str(python)!r})\n"
        "s.start(); print(s.process.pid, flush=True); time.sleep(300)\n")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        guard = int(bench.stdout.readline())
        for _ in range(100):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            time.sleep(0.05)
        server = int(pid_file.read_text())
        assert _running(server) and _running(guard)
        bench.send_signal(signal.SIGKILL)
        bench.wait(timeout=10)
        for _ in range(100):
            if not _running(server) and not _running(guard):
                break
            time.sleep(0.1)
        assert not _running(server), "the server outlived the bench that started it"
        assert not _running(guard)
    finally:
        bench.kill()

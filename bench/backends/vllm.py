"""The managed `vllm` backend: the bench starts a vLLM server for the run and talks to it
through the `openai` backend.

    models:
      - {backend: vllm, model: smollm2-135m, enable_lora: true}

`model` is any hf spec that resolves to local weights (an alias, a .gguf file, a
folder); a GGUF is converted to safetensors once (the same cached folder the hf backend
loads), so the engine serves exactly the weights the hf backend trains on. The server
(bench/vllm_server.py: its own venv, 127.0.0.1, a free port, its log in the run folder)
is stopped when the run closes the model (`close_lm`), on error and on Ctrl-C.

With `enable_lora` the model serves adapters (the openai backend's `adapters: true`): a
weight-changing strategy trains on `trainable_base()` (the hf backend over the same
weights) and predicts through `with_served_adapter(folder, name)`, which loads the saved
PEFT folder at run time (POST /v1/load_lora_adapter; the server runs with
VLLM_ALLOW_RUNTIME_LORA_UPDATING) and returns the openai backend naming that adapter.

This module is light (no torch, no httpx) until `load` runs; the registry entry is
`VLLM` ("vllm": "bench.backends.vllm:VLLM" in `bench.backends.BACKENDS`; short form
`vllm:MODEL`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError
from bench.lm import Capabilities
from bench.vllm_server import LORA_LAYERS


@dataclass(frozen=True)
class VLLMBackendOptions:
    model: str = "smollm2-135m"  # an hf spec with local weights: alias, .gguf, folder
    enable_lora: bool = False
    max_lora_rank: int = 16
    max_loras: int = 2
    lora_target_modules: tuple[str, ...] | None = LORA_LAYERS  # never lm_head (see VLLMOptions)
    max_model_len: int = 2048
    kv_cache_space_gib: int = 1
    dtype: str | None = "float32"  # the hf backend's CPU dtype, so both score alike
    max_connections: int = 16
    startup_timeout_s: float = 1200.0
    request_timeout_s: float = 300.0  # a CPU server under 16 concurrent requests is slow per request
    extra_args: tuple[str, ...] = ()
    log: str | None = None  # the server's log; default: vllm-server.log in the run folder

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("model must be a model spec string (an alias, a .gguf file or a folder)")
        for name in ("max_lora_rank", "max_loras", "max_model_len", "kv_cache_space_gib", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.enable_lora, bool):
            raise ValueError(f"enable_lora must be true or false, got {self.enable_lora!r}")
        if isinstance(self.extra_args, str):
            raise ValueError("extra_args must be a list of command-line arguments, not one string")
        object.__setattr__(self, "extra_args", tuple(str(a) for a in self.extra_args))
        if self.lora_target_modules is not None:
            object.__setattr__(self, "lora_target_modules", tuple(str(m) for m in self.lora_target_modules))


def capabilities(options: VLLMBackendOptions) -> Capabilities:
    # Training for LoRA happens on the local twin (trainable_base), serving on the engine.
    return Capabilities(prompt_logprobs=True, trainable=False, adapters=options.enable_lora, chat=True)


def label(options: VLLMBackendOptions) -> str:
    return f"vllm:{served_model_name(options)}"


def check(options: VLLMBackendOptions) -> None:
    """Before any data is read: the venv exists and the model spec resolves locally."""
    from bench.models import resolve_source
    from bench.vllm_server import require_vllm_python

    require_vllm_python()
    if resolve_source(options.model).kind == "hub":
        raise BenchError(f"vllm backend: model {options.model!r} is a hub id; the managed server serves local "
                         "weights only (an alias, a .gguf file or a folder)")


def served_model_folder(spec: str, log: Callable[..., Any] = print) -> Path:
    """The local safetensors folder vLLM serves for an hf spec (a GGUF is converted once)."""
    from bench.models import converted_gguf, resolve_source

    source = resolve_source(spec)
    if source.kind == "gguf":
        return converted_gguf(Path(source.location), log)[0]
    if source.kind == "folder":
        return Path(source.location)
    raise BenchError(f"vllm backend: model {spec!r} is not local; give an alias, a .gguf file or a folder")


def start_server(options: VLLMBackendOptions, served_name: str, log_path: Path, log: Callable[..., Any] = print):
    from bench.vllm_server import VLLMOptions, VLLMServer

    folder = served_model_folder(options.model, log)
    server_options = VLLMOptions(
        model=str(folder), served_name=served_name, max_model_len=options.max_model_len,
        enable_lora=options.enable_lora, max_lora_rank=options.max_lora_rank, max_loras=options.max_loras,
        lora_target_modules=options.lora_target_modules,
        kv_cache_space_gib=options.kv_cache_space_gib, dtype=options.dtype, extra_args=options.extra_args,
        startup_timeout_s=options.startup_timeout_s)
    server = VLLMServer(server_options, log_path)
    log(f"starting vLLM on 127.0.0.1 for {options.model} (log: {log_path}; minutes on a CPU) ...")
    server.start()
    try:
        server.wait()
    except BaseException:
        server.stop()
        raise
    log(f"vLLM ready on {server.base_url} after {server.startup_s:.0f} s")
    return server, folder


def load(spec: Any, ctx: Any):
    """Registry loader: start the server, return the `openai` backend pointed at it. The
    server stops when the run closes the model (`ctx.on_close`) or loading fails."""
    from bench.backends.entries import OpenAIOptions
    from bench.backends.openai import connect

    options: VLLMBackendOptions = spec.options
    served_name = served_model_name(options)
    run_dir = Path(ctx.run_dir) if getattr(ctx, "run_dir", None) else None
    if options.log:
        log_path = Path(options.log)
    elif run_dir is not None:
        log_path = run_dir / "vllm-server.log"
    else:
        from bench.paths import cache_dir

        log_path = cache_dir("logs") / f"vllm-server-{os.getpid()}.log"
    server, folder = start_server(options, served_name, log_path, ctx.log)
    ctx.on_close(server.stop)
    # The tokenizer renders prompts here exactly as the hf backend does; `weights` is the
    # hf spec LoRA trains on (the same weights the server serves).
    lm = connect(OpenAIOptions(model=served_name, base_url=server.base_url, tokenizer=str(folder),
                               weights=options.model, adapters=options.enable_lora,
                               max_connections=options.max_connections, timeout_s=options.request_timeout_s),
                 ctx, spec.label, where="managed vllm")  # its port changes every start: not in the fingerprint
    lm.extra.update({"backend": "vllm", "engine": f"vllm {server_version(server)}", "dtype": options.dtype,
                     "server_log": str(log_path), "server_startup_s": round(server.startup_s or 0.0, 1)})
    return lm


def served_model_name(options: VLLMBackendOptions) -> str:
    """The id the server answers to: the alias, or the folder's or file's stem."""
    return Path(options.model).stem if ("/" in options.model or options.model.endswith(".gguf")) else options.model


def server_version(server: Any) -> str:
    try:
        import json
        import urllib.request

        with urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/version", timeout=5) as resp:
            return str(json.loads(resp.read().decode()).get("version"))
    except (OSError, ValueError):
        return "unknown"


def __getattr__(name: str) -> Any:
    if name == "VLLM":  # the registry entry; needs bench.backends.Backend (seam 1)
        from bench.backends import Backend

        return Backend(name="vllm", options=VLLMBackendOptions, capabilities=capabilities,
                       load="bench.backends.vllm:load", label=label, check=check,
                       short=lambda rest: {"model": rest})  # --model vllm:smollm2-135m
    raise AttributeError(name)

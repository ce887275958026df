"""The managed `vllm` backend: the bench starts a vLLM server for the run and talks to it
through the `openai` backend.

    models:
      - {backend: vllm, model: smollm2-135m, enable_lora: true}

`model` is any hf spec that resolves to local weights (an alias, a .gguf file, a
folder); a GGUF is converted to safetensors once (the same cached folder the hf backend
loads), so the engine serves exactly the weights the hf backend trains on. The server
(bench/vllm_server.py: its own venv, 127.0.0.1, a free port, its log in the run folder)
is stopped when the run closes the model (`close_lm`), on error and on Ctrl-C.

With `enable_lora` the model serves adapters: a weight-changing strategy trains on
`trainable_base()` (the hf backend over the same folder) and predicts through
`with_served_adapter(folder, name)`, which loads the saved PEFT folder at run time
(POST /v1/load_lora_adapter) and returns the `openai` backend for that adapter.

This module is light (no torch, no httpx) until `load` runs; the registry entry is
`VLLM` (built on first access, so importing it needs only `bench.backends.Backend`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError
from bench.lm import Capabilities


@dataclass(frozen=True)
class VLLMBackendOptions:
    model: str = "smollm2-135m"  # an hf spec with local weights: alias, .gguf, folder
    enable_lora: bool = False
    max_lora_rank: int = 16
    max_loras: int = 2
    max_model_len: int = 2048
    kv_cache_space_gib: int = 1
    dtype: str | None = "float32"  # the hf backend's CPU dtype, so both score alike
    max_connections: int = 16
    startup_timeout_s: float = 1200.0
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


def capabilities(options: VLLMBackendOptions) -> Capabilities:
    # Training for LoRA happens on the local twin (trainable_base), serving on the engine.
    return Capabilities(prompt_logprobs=True, trainable=False, adapters=options.enable_lora, chat=True)


def label(options: VLLMBackendOptions) -> str:
    return f"vllm:{Path(options.model).name if '/' in options.model else options.model}"


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
    """Registry loader: start the server, return the `openai` backend pointed at it."""
    options: VLLMBackendOptions = spec.options
    served_name = spec.label.replace("vllm:", "", 1) or "model"
    run_dir = Path(ctx.run_dir) if getattr(ctx, "run_dir", None) else None
    if options.log:
        log_path = Path(options.log)
    elif run_dir is not None:
        log_path = run_dir / "vllm-server.log"
    else:
        from bench.paths import cache_dir

        log_path = cache_dir("logs") / "vllm-server.log"
    server, folder = start_server(options, served_name, log_path, ctx.log)
    ctx.on_close(server.stop)
    return ServedModel(server, folder, spec.label, options, ctx)


def openai_lm(server: Any, model_id: str, folder: Path, label: str, max_connections: int, ctx: Any):
    """The `openai` backend for one model id on `server` (through its public spec)."""
    from bench.backends import ModelSpec, load_lm

    entry = {"backend": "openai", "model": model_id, "base_url": server.base_url, "tokenizer": str(folder),
             "max_connections": max_connections, "label": label}
    return load_lm(ModelSpec.parse(entry, f"vllm model {label}"), device=ctx.device,
                   max_context=ctx.max_context, log=ctx.log)


@dataclass
class ServedModel:
    """The openai backend on the managed server, plus adapter serving when enabled.
    Every LM attribute not defined here is the openai backend's."""

    server: Any
    folder: Path
    label: str
    options: VLLMBackendOptions
    ctx: Any
    lm: Any = None
    _base: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.lm is None:
            self.lm = openai_lm(self.server, self.server.options.model_id, self.folder, self.label,
                                self.options.max_connections, self.ctx)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("lm", "server"):
            raise AttributeError(name)
        return getattr(self.lm, name)

    @property
    def capabilities(self) -> Capabilities:
        return replace(self.lm.capabilities, adapters=self.options.enable_lora, trainable=False)

    def trainable_base(self):
        """The hf backend over the very folder the server serves (loaded once)."""
        if self._base is None:
            from bench.backends import ModelSpec, load_lm

            self._base = load_lm(ModelSpec.parse(str(self.folder), f"vllm model {self.label} (training base)"),
                                 device=self.ctx.device, max_context=self.ctx.max_context, log=self.ctx.log)
        return self._base

    def with_served_adapter(self, adapter_dir: Any, name: str):
        if not self.options.enable_lora:
            raise BenchError(f"model {self.label!r}: the vLLM server was started without enable_lora")
        model_id = self.server.load_lora_adapter(name, adapter_dir)
        return openai_lm(self.server, model_id, self.folder, f"{self.label}+{name}", self.options.max_connections,
                         self.ctx)

    def close(self) -> None:
        for lm in (self.lm, self._base):
            close = getattr(lm, "close", None)
            if callable(close):
                close()
        self.server.stop()


def __getattr__(name: str) -> Any:
    if name == "VLLM":  # the registry entry; needs bench.backends.Backend (seam 1)
        from bench.backends import Backend

        return Backend(name="vllm", options=VLLMBackendOptions, capabilities=capabilities,
                       load="bench.backends.vllm:load", label=label, check=check)
    raise AttributeError(name)

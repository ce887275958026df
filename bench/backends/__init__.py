"""Model backends behind the `bench.lm.LM` protocol: the registry, model specs, loading.

A model entry in the config is a string (an `hf` spec, as always: an alias, a .gguf
file, a local folder or a hub id), a short form `BACKEND:REST` for a backend that has
one (`openai:NAME@http://127.0.0.1:8000/v1`), or a mapping with `backend:` and that
backend's options (unknown keys are an error naming the entry):

    models:
      - smollm2-135m
      - {backend: openai, model: smol, base_url: http://127.0.0.1:8000/v1, tokenizer: smollm2-135m}

The registry's entries are `Backend` objects (light modules: no torch, no httpx), so
what a backend can do is known before anything loads (`capabilities_of`, `check_grid`).
An entry's `load(spec, ctx) -> LM` may start things (a managed server): it registers
their shutdown with `ctx.on_close`, and `close_lm(lm)` runs them (at exit at the latest,
also after Ctrl-C). A managed-server entry, for example, looks like:

    def load(spec, ctx):                     # bench/vllm_server.py
        server = start(spec.options, log_dir=ctx.run_dir, log=ctx.log)  # waits until ready
        ctx.on_close(server.stop)
        return bench.backends.openai.connect(OpenAIOptions(model=..., base_url=server.url,
                                             tokenizer=..., adapters=...), ctx, spec.label)

    VLLM = Backend(name="vllm", options=VLLMOptions, load="bench.vllm_server:load",
                   label=lambda o: f"vllm:{o.model}", short=lambda rest: {"model": rest},
                   capabilities=lambda o: Capabilities(prompt_logprobs=True, adapters=o.enable_lora))

and one line in `BACKENDS`: `"vllm": "bench.vllm_server:VLLM"`.
"""
from __future__ import annotations

import atexit
import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

from bench.errors import BenchError
from bench.lm import LM, Capabilities
from bench.registry import Registry


@dataclass(frozen=True)
class Backend:
    """One registry entry. `load` is a lazy "module:attr" target, called as
    `load(spec: ModelSpec, ctx: LoadContext) -> LM`."""

    name: str
    options: type  # a frozen dataclass validated in __post_init__
    capabilities: Callable[[Any], Capabilities]  # from the options alone, nothing loaded
    load: str
    label: Callable[[Any], str]  # the default label of an entry without `label:`
    short: Callable[[str], dict] | None = None  # "REST" of "BACKEND:REST" -> options
    check: Callable[[Any], None] | None = None  # cheap checks before any data is read

    def loader(self) -> Callable[["ModelSpec", "LoadContext"], LM]:
        module, _, attr = self.load.partition(":")
        return getattr(importlib.import_module(module), attr)


BACKENDS = Registry("model backend", {
    "hf": "bench.backends.entries:HF",
    "openai": "bench.backends.entries:OPENAI",
    "vllm": "bench.backends.vllm:VLLM",
})


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    options: Any  # the backend's options dataclass
    label: str  # the model's name in cell ids, rows and tables

    @classmethod
    def parse(cls, entry: Any, where: str) -> "ModelSpec":
        if isinstance(entry, ModelSpec):
            return entry
        if isinstance(entry, str):
            prefix, sep, rest = entry.partition(":")
            if sep and prefix != "hf" and prefix in BACKENDS:
                backend = BACKENDS.load(prefix)
                if backend.short is None:
                    raise BenchError(f"{where}: backend {prefix!r} has no short form; give a mapping "
                                     f"with 'backend: {prefix}'")
                return cls._build(backend, backend.short(rest), None, where)
            return cls._build(BACKENDS.load("hf"), {"model": entry.removeprefix("hf:")}, entry, where)
        if isinstance(entry, Mapping):
            options = dict(entry)
            name = str(options.pop("backend", "hf"))
            if name not in BACKENDS:
                try:
                    BACKENDS.check(name)
                except BenchError as exc:
                    raise BenchError(f"{where}: {exc}") from None
            label = options.pop("label", None)
            return cls._build(BACKENDS.load(name), options, None if label is None else str(label), where)
        raise BenchError(f"{where}: a model is a spec string or a mapping with 'backend', got {entry!r}")

    @classmethod
    def _build(cls, backend: Backend, options: dict, label: str | None, where: str) -> "ModelSpec":
        from bench.options import config_from

        try:
            opts = config_from(backend.options, options, f"{where} ({backend.name} backend)")
        except (ValueError, TypeError) as exc:
            raise BenchError(f"{where} ({backend.name} backend): {exc}") from None
        return cls(backend.name, opts, label or backend.label(opts))

    @property
    def entry(self) -> Backend:
        return BACKENDS.load(self.backend)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "label": self.label, **asdict(self.options)}


@dataclass
class LoadContext:
    device: str | None = "auto"
    max_context: int = 2048
    trust_remote_code: bool = False
    log: Callable[..., Any] = print
    run_dir: Any = None  # a managed server writes its log here
    closers: list[Callable[[], None]] = field(default_factory=list)

    def on_close(self, fn: Callable[[], None]) -> None:
        self.closers.append(fn)


def load_lm(spec: ModelSpec, device: str | None = "auto", max_context: int = 2048,
            trust_remote_code: bool = False, log: Callable[..., Any] = print, run_dir: Any = None) -> LM:
    ctx = LoadContext(device, max_context, trust_remote_code, log, run_dir)
    try:
        lm = spec.entry.loader()(spec, ctx)
    except BaseException:
        _run_closers(ctx.closers)
        raise
    if ctx.closers:
        _CLOSERS[id(lm)] = ctx.closers
    return lm


_CLOSERS: dict[int, list[Callable[[], None]]] = {}  # id(lm) -> what close_lm stops


@atexit.register
def _close_all() -> None:
    """A run stopped by Ctrl-C or an error still stops the servers it started."""
    while _CLOSERS:
        _run_closers(_CLOSERS.popitem()[1])


def close_lm(lm: Any) -> None:
    """Stop what loading the model started (a managed server), release connections."""
    closers = _CLOSERS.pop(id(lm), [])
    close = getattr(lm, "close", None)
    if callable(close):
        close()
    _run_closers(closers)


def _run_closers(closers: Iterable[Callable[[], None]]) -> None:
    for fn in reversed(list(closers)):
        try:
            fn()
        except Exception:  # a stop that fails must not hide the run's own result
            pass


def capabilities_of(spec: ModelSpec) -> Capabilities:
    return spec.entry.capabilities(spec.options)


def check_specs(specs: Iterable[ModelSpec]) -> None:
    """Each backend's cheap checks (an unknown alias), before any data is read."""
    for spec in specs:
        if spec.entry.check is not None:
            spec.entry.check(spec.options)


# A need is met by these capabilities (any one): a weight-changing strategy trains on the
# backend itself, or on the local twin of a server that serves adapters (`training_base`).
_MET_BY = {"trainable": ("trainable", "adapters"), "adapters": ("adapters",)}


def check_grid(strategy_needs: Mapping[str, Iterable[str]], model_specs: Iterable[ModelSpec]) -> None:
    """Every strategy x model pair is possible, or a config error naming both. Needs with a
    fallback (prompt_logprobs: greedy generation matched to the labels) never fail here."""
    problems = []
    for spec in model_specs:
        have = capabilities_of(spec).names()
        for strategy, needs in strategy_needs.items():
            missing = [n for n in sorted(needs) if n in _MET_BY and not have & set(_MET_BY[n])]
            if missing:
                problems.append(f"strategy {strategy!r} needs {', '.join(missing)}, which model {spec.label!r} "
                                f"({spec.backend} backend) does not have")
    if problems:
        raise BenchError("config: " + "; ".join(problems) + ". Run weight-changing strategies on an hf model, "
                         "or on an openai/vllm server started with LoRA enabled (adapters: true).")

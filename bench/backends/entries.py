"""The registry's entries and their options: what each backend is, known without loading it.

Kept apart from the implementations so the grid check and `bench --help` import no
torch and no HTTP client.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bench.backends import Backend
from bench.lm import Capabilities

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class HFOptions:
    """In-process transformers: `model` is an alias, a .gguf file, a local folder or a hub id."""

    model: str = "smollm2-135m"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"model must be a non-empty spec string, got {self.model!r}")


def _check_hf(options: HFOptions) -> None:
    from pathlib import Path

    from bench.models import ALIASES
    from bench.registry import Registry

    spec = options.model
    if not (Path(spec).expanduser().exists() or spec.endswith(".gguf") or spec.count("/") == 1
            or spec.startswith((".", "/", "~"))):
        Registry("model alias", ALIASES).check(spec)


HF = Backend(name="hf", options=HFOptions, load="bench.backends.hf:load", label=lambda o: o.model,
             capabilities=lambda o: Capabilities(prompt_logprobs=True, trainable=True, adapters=True, chat=True),
             check=_check_hf)


@dataclass(frozen=True)
class OpenAIOptions:
    """Any OpenAI-compatible server (vLLM, llama.cpp, SGLang, TGI, a hosted API).

    The key is read from the environment variable named by `api_key_env` at load time;
    it is never stored, logged or put in an error. `tokenizer` (a local HF folder, .gguf
    or alias) renders the chat template and counts tokens here, so prompts are exactly
    the hf backend's; without it the server applies its own template (chat endpoint)."""

    model: str
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = None
    tokenizer: str | None = None
    weights: str | None = None  # hf spec of the server's weights, for training (default: tokenizer)
    max_connections: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4
    chat: bool | str = "auto"  # auto: chat endpoint unless a local tokenizer renders the prompt
    adapters: bool = False  # the server was started with LoRA enabled (vLLM --enable-lora)
    max_context: int | None = None  # default: the server's max_model_len, else the run's max_context
    price: str | None = None  # a bench.cost API_PRICES key: priced per token (a hosted API)
    hosted: bool = False  # a hosted API (priced per token) rather than a server on our hardware

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"model must be the served model's name, got {self.model!r}")
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.api_key_env is not None and not (isinstance(self.api_key_env, str)
                                                 and _ENV_NAME.match(self.api_key_env)):
            # Never echo the value: it may be the key itself, pasted in the wrong place.
            raise ValueError("api_key_env must name an environment variable (e.g. OPENAI_API_KEY) that holds "
                             "the key; the key itself never goes in the config")
        for name in ("max_connections", "max_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "max_connections"
                                                                                 else 0):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'max_connections' else 0}, "
                                 f"got {value!r}")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be a number of seconds > 0, got {self.timeout_s!r}")
        if self.chat not in ("auto", True, False):
            raise ValueError(f"chat must be auto, true or false, got {self.chat!r}")
        if self.max_context is not None and (not isinstance(self.max_context, int) or self.max_context < 16):
            raise ValueError(f"max_context must be an integer >= 16, got {self.max_context!r}")
        if self.price is not None:
            from bench.cost import API_PRICES

            if self.price not in API_PRICES:
                raise ValueError(f"price {self.price!r} is not in the API price table; known: {sorted(API_PRICES)}")

    @property
    def uses_chat_endpoint(self) -> bool:
        return self.chat is True or (self.chat == "auto" and self.tokenizer is None)


def _openai_short(rest: str) -> dict:
    """`NAME` or `NAME@BASE_URL` (the CLI's `--model openai:NAME@http://127.0.0.1:8000/v1`)."""
    name, at, url = rest.partition("@")
    return {"model": name, **({"base_url": url} if at else {})}


OPENAI = Backend(name="openai", options=OpenAIOptions, load="bench.backends.openai:load",
                 label=lambda o: f"openai:{o.model}", short=_openai_short,
                 capabilities=lambda o: Capabilities(prompt_logprobs=True, trainable=False, adapters=bool(o.adapters),
                                                     chat=True))

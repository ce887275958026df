"""The `openai` backend: any OpenAI-compatible server (vLLM, llama.cpp, SGLang, a hosted API).

How each `LM` call becomes requests (one request per query, `max_connections` at once):
- With a local `tokenizer`, prompts are rendered here with the model's chat template,
  exactly as the hf backend renders them, and sent to `/completions`; without one, a
  prompt is the conversation itself and goes to `/chat/completions`, where the server
  applies its own template.
- `generate` streams (`stream_options.include_usage`): latency is the request's wall
  time at the client, time to first token the first streamed text, tokens the
  server's `usage`.
- `score_choices` asks `/completions` for the prompt + each label with `echo: true,
  logprobs: 1` and sums the log-probabilities of the tokens that overlap the label
  (found by the returned text offsets). A server without prompt log-probabilities
  (llama.cpp; chat-only APIs) is detected on the first call; from then on labels are
  chosen by greedy generation matched to the labels (`ChoiceScores.method == "generate"`).
- The fingerprint hashes what the server reports (/models: id, root, max_model_len;
  /version) with the URL, the endpoint, the tokenizer's hash and a served adapter's
  hash: another server or model never serves these cached predictions.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.backends import chat
from bench.backends.http import Client, ServerError
from bench.backends.labels import NoPromptLogprobs, label_logprob, match_label
from bench.errors import BenchError
from bench.lm import Capabilities, ChoiceScores, Generation, Progress

CHAT_PREFIX = "\x1eadaptbench-chat\x1e"  # a prompt that is a serialized conversation (no local template)
_CHARS_PER_TOKEN = 4  # token estimate without a local tokenizer; the server's usage is what is stored
_CLASSIFY_TOKENS = 8  # new tokens for a label chosen by generation (as strategies.prompts reserves)
_MEMO_SIZE = 4096  # prompts whose token ids are remembered (counted to fit, then sent)


class OpenAIBackend:
    def __init__(self, options, client: Client, name: str, fingerprint: str, max_context: int, extra: dict,
                 tokenizer: Any = None, facts: dict | None = None, served_model: str | None = None,
                 load_args: dict | None = None) -> None:
        self.options, self.client, self.name = options, client, name
        self.fingerprint, self.max_context, self.extra = fingerprint, max_context, extra
        self.tokenizer, self.facts = tokenizer, dict(facts or {})
        self.served_model = served_model or options.model
        self.device = "server"
        self.system_prompt: str | None = None
        self._load_args = dict(load_args or {})
        # Shared with adapter twins. A fast tokenizer is not safe to call from several
        # threads at once ("Already borrowed"): one lock, and a bounded memo of encodings.
        self._state = {"prompt_logprobs": None, "stream": True, "base": None, "lock": threading.Lock(), "ids": {}}

    # -- what it is -------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        logprobs = self._state["prompt_logprobs"] is not False and not self.options.uses_chat_endpoint
        return Capabilities(prompt_logprobs=logprobs, trainable=False, adapters=bool(self.options.adapters),
                            chat=self.tokenizer is None or chat.has_chat_template(self.tokenizer))

    @property
    def end_of_answer(self) -> str:
        return chat.end_of_answer(self.tokenizer)

    def close(self) -> None:
        self.client.close()

    # -- prompts ----------------------------------------------------------------
    def render(self, user: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None) -> str:
        system = system if system is not None else self.system_prompt
        if self.options.uses_chat_endpoint:
            return CHAT_PREFIX + json.dumps(chat.messages(user, shots, system), ensure_ascii=False)
        return chat.render(self.tokenizer, user, shots, system)

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None and not text.startswith(CHAT_PREFIX):
            return len(self.encode(text))
        if text.startswith(CHAT_PREFIX):
            turns = json.loads(text[len(CHAT_PREFIX):])
            if self.tokenizer is not None and chat.has_chat_template(self.tokenizer):  # chat: true with a tokenizer
                with self._state["lock"]:
                    rendered = self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
                return len(self.encode(rendered))
            return sum(math.ceil(len(t["content"]) / _CHARS_PER_TOKEN) + 4 for t in turns)
        return math.ceil(len(text) / _CHARS_PER_TOKEN)

    def encode(self, text: str) -> list[int]:
        memo = self._state["ids"]
        with self._state["lock"]:
            ids = memo.get(text)
            if ids is None:
                ids = memo[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                if len(memo) > _MEMO_SIZE:
                    memo.pop(next(iter(memo)))  # oldest first
        return list(ids)

    def _fit(self, prompt: str, room: int) -> tuple[str, bool]:
        """The end of an over-long prompt, as the hf backend keeps it (needs the tokenizer)."""
        if self.tokenizer is None or prompt.startswith(CHAT_PREFIX):
            return prompt, False
        ids, limit = self.encode(prompt), max(1, self.max_context - room)
        if len(ids) <= limit:
            return prompt, False
        with self._state["lock"]:
            return self.tokenizer.decode(ids[-limit:]), True

    # -- generation -------------------------------------------------------------
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 8,
                 progress: Progress | None = None) -> list[Generation]:
        return self._each(prompts, lambda p: self._generate_one(p, max_new_tokens), progress)

    def _generate_one(self, prompt: str, max_new_tokens: int) -> Generation:
        prompt, truncated = self._fit(prompt, max_new_tokens)
        path, payload = self._request(prompt, max_new_tokens)
        t0 = time.perf_counter()
        if self._state["stream"]:
            got: dict[str, Any] = {}

            def on_event(event: dict) -> None:
                if not event:  # a retried stream starts again
                    got.clear()
                    return
                for choice in event.get("choices") or []:
                    piece = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
                    if piece:
                        got.setdefault("first", time.perf_counter() - t0)
                        got["text"] = got.get("text", "") + piece
                if event.get("usage"):
                    got["usage"] = event["usage"]

            try:
                self.client.stream(path, {**payload, "stream": True, "stream_options": {"include_usage": True}},
                                   on_event)
            except ServerError as exc:
                if exc.status != 400 or "stream" not in exc.detail.lower():
                    raise
                self._state["stream"] = False  # a server without streaming options: plain requests from now
                return self._generate_one(prompt, max_new_tokens)
            text, usage, first = got.get("text", ""), got.get("usage") or {}, got.get("first")
        else:
            body = self.client.post(path, payload)
            choice = (body.get("choices") or [{}])[0]
            text = choice.get("text") if "text" in choice else (choice.get("message") or {}).get("content") or ""
            usage, first = body.get("usage") or {}, None
        latency = time.perf_counter() - t0
        return Generation(text.strip(), int(usage.get("prompt_tokens") or self.count_tokens(prompt)),
                          int(usage.get("completion_tokens") or self.count_tokens(text)), latency, truncated, first)

    def _request(self, prompt: str, max_new_tokens: int) -> tuple[str, dict]:
        base = {"model": self.served_model, "max_tokens": max_new_tokens, "temperature": 0.0, "top_p": 1.0}
        if prompt.startswith(CHAT_PREFIX):
            return "chat/completions", {**base, "messages": json.loads(prompt[len(CHAT_PREFIX):])}
        return "completions", {**base, "prompt": prompt}

    # -- choice scoring ----------------------------------------------------------
    def score_choices(self, prompts: Sequence[str], choices: Sequence[str], batch_size: int = 16,
                      progress: Progress | None = None) -> list[ChoiceScores]:
        if not choices or any(not c for c in choices):
            raise ValueError("every choice must be a non-empty string")
        if self.capabilities.prompt_logprobs and prompts:
            try:
                first = [self._score_one(prompts[0], choices)]  # detects prompt log-probabilities once
            except NoPromptLogprobs:
                self._state["prompt_logprobs"] = False
                self.extra["scoring"] = "generate"
            else:
                self._state["prompt_logprobs"] = True
                self.extra["scoring"] = "logprobs"
                if progress:
                    progress(1)
                return first + self._each(prompts[1:], lambda p: self._score_one(p, choices), progress)
        return self._each(prompts, lambda p: self._choose_by_generation(p, choices), progress)

    def _score_one(self, prompt: str, choices: Sequence[str]) -> ChoiceScores:
        room = max(self.count_tokens(c) for c in choices)
        prompt, truncated = self._fit(prompt, room)
        payload = {"model": self.served_model, "prompt": [prompt + c for c in choices], "max_tokens": 1,
                   "echo": True, "logprobs": 1, "temperature": 0.0}
        t0 = time.perf_counter()
        try:
            body = self.client.post("completions", payload)
        except ServerError as exc:
            if exc.status in (400, 404, 422, 501):  # echo/logprobs (or /completions) not offered
                raise NoPromptLogprobs(str(exc)) from None
            raise
        latency = time.perf_counter() - t0
        rows = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(rows) != len(choices):
            raise NoPromptLogprobs(f"{len(rows)} choices back for {len(choices)} prompts")
        scores, prompt_tokens = [], 0
        for choice_text, row in zip(choices, rows):
            total, n_prompt = label_logprob(row.get("logprobs") or {}, len(prompt), len(prompt + choice_text))
            scores.append(total)
            prompt_tokens = n_prompt
        if self.tokenizer is not None:
            prompt_tokens = len(self.encode(prompt))
        best = max(range(len(choices)), key=lambda j: scores[j])
        return ChoiceScores(best, tuple(scores), prompt_tokens, latency, truncated, "logprobs")

    def _choose_by_generation(self, prompt: str, choices: Sequence[str]) -> ChoiceScores:
        gen = self._generate_one(prompt, _CLASSIFY_TOKENS)
        best = match_label(gen.text, choices)
        return ChoiceScores(best, tuple(math.nan for _ in choices), gen.prompt_tokens, gen.latency_s,
                            gen.truncated, "generate")

    # -- concurrency -------------------------------------------------------------
    def _each(self, prompts: Sequence[str], one: Callable[[str], Any], progress: Progress | None) -> list:
        """`one(prompt)` for every prompt, `max_connections` at a time, in the caller's order."""
        results: list[Any] = [None] * len(prompts)
        if len(prompts) <= 1:  # a batch-1 latency probe: no pool to start
            for i, prompt in enumerate(prompts):
                results[i] = one(prompt)
                if progress:
                    progress(1)
            return results
        with ThreadPoolExecutor(max_workers=min(self.options.max_connections, len(prompts))) as pool:
            futures = {pool.submit(one, p): i for i, p in enumerate(prompts)}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    if progress:
                        progress(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return results

    # -- adapters (AdapterServingLM) -----------------------------------------------
    def trainable_base(self):
        """The hf backend over the same weights the server serves (`weights`, else `tokenizer`)."""
        if self._state["base"] is None:
            spec = self.options.weights or self.options.tokenizer
            if not spec:
                raise BenchError(f"model {self.name!r}: training for adapter serving needs the server's weights "
                                 "here; set `weights:` (or `tokenizer:`) to the model the server serves")
            from bench.backends.hf import load_hf

            self._state["base"] = load_hf(spec, **self._load_args)
        return self._state["base"]

    def with_served_adapter(self, adapter_dir: Any, name: str) -> "OpenAIBackend":
        """The server loads the adapter (POST /load_lora_adapter); requests then name it."""
        folder = Path(adapter_dir).resolve()
        digest = _folder_sha256(folder)
        try:
            self.client.post("load_lora_adapter", {"lora_name": name, "lora_path": str(folder)})
        except ServerError as exc:
            if "already" not in exc.detail.lower():  # loaded before (a resumed run): the same name serves it
                raise
        twin = OpenAIBackend(self.options, self.client, self.name, f"{self.fingerprint}:lora:{digest[:12]}",
                             self.max_context, {**self.extra, "adapter": name, "adapter_sha256": digest},
                             self.tokenizer, self.facts, served_model=name, load_args=self._load_args)
        twin._state = self._state
        return twin


def _folder_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


# -- loading --------------------------------------------------------------------------
def load(spec, ctx) -> OpenAIBackend:
    """The registry's entry point (`bench.backends.load_lm`)."""
    return connect(spec.options, ctx, spec.label)


def connect(options, ctx, name: str | None = None, where: Any = None) -> OpenAIBackend:
    """An `OpenAIBackend` for `options` (an `OpenAIOptions`), checked against the server:
    it answers, the key is accepted, and it serves `options.model`. A managed server
    (the vllm entry) calls this with the URL it started; its port changes every start,
    so it passes `where` (e.g. "managed vllm"), which stands for the URL in the
    fingerprint: the same engine and weights on another port reuse cached predictions."""
    name = name or f"openai:{options.model}"
    key = _api_key(options, name)
    client = Client(options.base_url, options.model, key, options.timeout_s, options.max_retries,
                    options.max_connections, key_env=options.api_key_env)
    try:
        ctx.log(f"connecting to {options.base_url} (model {options.model}) ...")
        try:
            served = client.get("models", retries=min(1, options.max_retries)).get("data") or []
        except ServerError as exc:
            if exc.status != 404:
                raise
            served = []  # a server without /models: the first request tells whether the model exists
        facts = next((m for m in served if m.get("id") == options.model), None)
        if served and facts is None:
            ids = ", ".join(sorted(str(m.get("id")) for m in served)[:8])
            raise BenchError(f"{options.base_url} (model {options.model!r}): the server does not serve this model; "
                             f"it serves: {ids}")
        facts = {k: (facts or {}).get(k) for k in ("id", "root", "max_model_len", "owned_by")}
        facts["version"] = _server_version(options.base_url, client)
        tokenizer, tok_sha = _tokenizer(options, ctx)
        limit = options.max_context or min(ctx.max_context, int(facts.get("max_model_len") or ctx.max_context))
        endpoint = "chat/completions" if options.uses_chat_endpoint else "completions"
        identity = {"base_url": options.base_url if where is None else where, "model": options.model, "server": facts, "endpoint": endpoint,
                    "tokenizer_sha256": tok_sha, "max_context": limit}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        extra = {"backend": "openai", "base_url": options.base_url, "served_model": options.model,
                 "server": facts, "endpoint": endpoint, "tokenizer": options.tokenizer,
                 "tokenizer_sha256": tok_sha, "max_connections": options.max_connections,
                 "token_counts": "local tokenizer" if tokenizer is not None else "server usage; estimate before",
                 "hosted": bool(options.hosted or options.price), "price": options.price}
        load_args = {"device": ctx.device, "max_context": ctx.max_context,
                     "trust_remote_code": ctx.trust_remote_code, "log": ctx.log}
        return OpenAIBackend(options, client, name, f"openai:{options.model}:{digest}", limit, extra, tokenizer,
                             facts, load_args=load_args)
    except BaseException:
        client.close()
        raise


def _api_key(options, name: str) -> str | None:
    if not options.api_key_env:
        return None
    key = os.environ.get(options.api_key_env)
    if not key:
        raise BenchError(f"model {name!r}: the environment variable {options.api_key_env} (api_key_env) is not set; "
                         "export the API key there")
    return key


def _server_version(base_url: str, client: Client) -> str | None:
    """vLLM serves /version beside /v1; other servers may not: then unknown."""
    root = re.sub(r"/v\d+$", "", base_url)
    try:
        response = client.http.get(root + "/version", timeout=5.0)
        return str(response.json().get("version")) if response.status_code == 200 else None
    except Exception:  # noqa: BLE001 - optional fact
        return None


def _tokenizer(options, ctx) -> tuple[Any, str | None]:
    if not options.tokenizer:
        return None, None
    from transformers import AutoTokenizer

    folder = Path(options.tokenizer).expanduser()
    if not (folder.is_dir() and any(folder.glob("tokenizer*.json"))):
        from bench.models import converted_gguf, resolve_source

        source = resolve_source(options.tokenizer)
        folder = converted_gguf(Path(source.location), ctx.log)[0] if source.kind == "gguf" else Path(source.location)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=ctx.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise BenchError(f"tokenizer {options.tokenizer!r} of model {options.model!r}: could not load it ({exc}); "
                         "give a local Hugging Face folder, a .gguf file or an alias") from None
    h = hashlib.sha256((getattr(tok, "chat_template", "") or "").encode())
    for path in sorted(folder.glob("*")):
        if path.is_file() and (path.name.startswith(("tokenizer", "special_tokens")) or path.suffix == ".jinja"
                               or path.name in ("vocab.json", "merges.txt")):
            h.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    return tok, h.hexdigest()[:16]

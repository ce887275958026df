"""The `hf` backend: one loaded causal LM + tokenizer in this process, shared by every
strategy; the only `TrainableLM`.

Batched generation and choice scoring live here and nowhere else:
- generation sorts prompts by length (less padding), left-pads, runs greedy decoding
  under `torch.inference_mode`, and returns outputs in the caller's order;
- choice scoring computes the summed log-likelihood of each label after the prompt,
  in one forward pass when the labels' tokens allow it (else the prompt once and each
  label from its KV cache);
- both start from a static prefix cache (bench/backends/prefix.py) when the prompts of
  a call share a long start (k-shot demonstrations, a system prompt): its KV is computed
  once and each batch runs only the tokens after it (`prefix_cache=False` turns it off).
Per-query latency here is the batch's wall time shared equally by its queries.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from bench.backends import chat, onednn, packing
from bench.backends.prefix import PrefixKV, PrefixMemo, cache_kw
from bench.errors import BenchError
from bench.lm import Capabilities, ChoiceScores, Generation, Progress
from bench.models import DEFAULT_MODEL

_MEMO_SIZE = 4096  # prompts remembered per handle: a few chunks of a cell


@dataclass(frozen=True)
class HFBackend:
    """The in-process transformers backend: an `LM` and the only `TrainableLM`."""

    model: Any
    tokenizer: Any
    name: str
    fingerprint: str  # changes whenever weights, tokenizer or template change
    device: str = "cpu"
    max_context: int = 2048
    system_prompt: str | None = None
    extra: dict = field(default_factory=dict)
    prefix_cache: bool = True
    pack_prompts: bool = True  # label scoring packs a batch's prompts into rows (bench/backends/packing.py)
    onednn_linear: bool = True  # fp32 CPU linears through oneDNN while generating and scoring (bench/backends/onednn.py)
    # Prompts are tokenised once to fit the context (strategies/prompts.py) and again to
    # run; the memo makes the second a lookup. Bounded, and never compared or copied.
    _ids: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _prefixes: PrefixMemo = field(default_factory=PrefixMemo, init=False, repr=False, compare=False)

    # -- the LM protocol ---------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(prompt_logprobs=True, trainable=True, adapters=True, chat=self.has_chat_template)

    @property
    def torch_model(self) -> Any:
        return self.model

    @property
    def pad_token_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if candidate is not None:
                return candidate
        return 0

    # -- prompts ---------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return chat.has_chat_template(self.tokenizer)

    def render(self, user: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None) -> str:
        """A conversation as the model expects it, ending where the answer starts."""
        return chat.render(self.tokenizer, user, shots, system if system is not None else self.system_prompt)

    @property
    def end_of_answer(self) -> str:
        return chat.end_of_answer(self.tokenizer)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def encode(self, text: str) -> list[int]:
        ids = self._ids.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(self._ids) >= _MEMO_SIZE:
                self._ids.pop(next(iter(self._ids)))  # oldest first
            self._ids[text] = ids
        return list(ids)

    def with_adapter(self, torch_model: Any, fingerprint: str) -> "HFBackend":
        """The same tokenizer and settings over other weights (a LoRA-wrapped model)."""
        return replace(self, model=torch_model, fingerprint=fingerprint)

    @property
    def _prompt_learning(self) -> bool:
        # A prompt-learning model prepends its virtual tokens inside every forward pass, so
        # a cached prefix would lack them and a custom mask would not cover them.
        return bool(getattr(getattr(self.model, "active_peft_config", None), "is_prompt_learning", False))

    def _prefix(self, seqs: list[list[int]]) -> PrefixKV | None:
        # Only a plain causal LM (LoRA-wrapped included).
        if not self.prefix_cache or not seqs or self._prompt_learning or getattr(self.model, "config", None) is None:
            return None
        return self._prefixes.find(self.model, seqs)

    def _groups(self, encoded: list[tuple[list[int], bool]], batch_size: int):
        """(prefix, prompt indices, their tokens after the prefix) per batch: longest
        prompts first (less padding), the prefix shared by all prompts of the call cut off
        once and served from its cache."""
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
        prefix = self._prefix([e[0] for e in encoded])
        cut = prefix.length if prefix else 0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            yield prefix, batch, [encoded[i][0][cut:] for i in batch]

    def _batches(self, encoded: list[tuple[list[int], bool]], batch_size: int):
        """(prefix, prompt indices, ids, mask) per batch, each batch left-padded."""
        for prefix, batch, seqs in self._groups(encoded, batch_size):
            yield (prefix, batch, *self._left_pad(seqs))

    def _fit(self, ids: list[int], room: int) -> tuple[list[int], bool]:
        # Keep the end of an over-long prompt: that is where the question and the
        # answer cue are. Callers should budget prompts so this rarely happens.
        limit = max(1, self.max_context - room)
        return (ids[-limit:], True) if len(ids) > limit else (ids, False)

    # -- generation ------------------------------------------------------------
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 8,
                 progress: Progress | None = None) -> list[Generation]:
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos_ids = _eos_ids(self.model, tok)
        encoded = [self._fit(self.encode(p), max_new_tokens) for p in prompts]
        results: list[Generation | None] = [None] * len(prompts)
        self.model.eval()
        with onednn.linears(self.model, self.onednn_linear):
            self._generate(encoded, results, max_new_tokens, batch_size, pad_id, eos_ids, progress)
        return results  # type: ignore[return-value]

    def _generate(self, encoded, results, max_new_tokens, batch_size, pad_id, eos_ids, progress) -> None:
        tok = self.tokenizer
        for prefix, batch, ids, mask in self._batches(encoded, batch_size):
            cut = prefix.length if prefix else 0
            kwargs = {}
            if prefix:  # [prefix | padding | suffix]: the cache holds the prefix, generate runs the rest
                ids = torch.cat([torch.tensor([prefix.ids]).expand(len(batch), -1), ids], 1)
                mask = torch.cat([torch.ones((len(batch), cut), dtype=mask.dtype), mask], 1)
                kwargs[cache_kw(self.model)] = prefix.expand(len(batch), self.model.config)
            width = ids.shape[1]
            first = _FirstTokenClock()
            t0 = first.start = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                    pad_token_id=pad_id, eos_token_id=eos_ids, logits_processor=LogitsProcessorList([first]),
                    **kwargs)
            share = (time.perf_counter() - t0) / len(batch)
            for row, i in enumerate(batch):
                new = out[row, width:].tolist()
                n = next((k for k, t in enumerate(new) if t in eos_ids), len(new))
                text = tok.decode(new[:n], skip_special_tokens=True).strip()
                results[i] = Generation(text, len(encoded[i][0]), n + (n < len(new)), share, encoded[i][1],
                                        first.seconds)
            if progress:
                progress(len(batch))

    # -- choice scoring -------------------------------------------------------
    def score_choices(self, prompts: Sequence[str], choices: Sequence[str], batch_size: int = 16,
                      progress: Progress | None = None) -> list[ChoiceScores]:
        """Summed log-likelihood of each choice after each prompt, each prompt run once.
        When every choice's tokens but its last are a prefix of one run of tokens (all
        single tokens, or "rot|ten" beside "fresh"), that run is appended to every
        prompt and one forward pass gives every choice's log-prob; otherwise every
        choice continues from the prompt's KV cache (cropped back after each). Only the
        logits that score a choice token are kept (no vocabulary projection at every
        prompt position)."""
        choice_ids = [self.encode(c) for c in choices]
        if any(not c for c in choice_ids):
            raise ValueError("every choice must encode to at least one token")
        room = max(len(c) for c in choice_ids)
        encoded = [self._fit(self.encode(p), room) for p in prompts]
        shared = _shared_run(choice_ids)
        packed = shared is not None and self.pack_prompts and packing.can_pack(self.model) \
            and not self._prompt_learning
        results: list[ChoiceScores | None] = [None] * len(prompts)
        self.model.eval()
        with onednn.linears(self.model, self.onednn_linear):
            self._score(encoded, results, choices, choice_ids, shared, packed, batch_size, progress)
        return results  # type: ignore[return-value]

    def _score(self, encoded, results, choices, choice_ids, shared, packed, batch_size, progress) -> None:
        for prefix, batch, seqs in self._groups(encoded, batch_size):
            t0 = time.perf_counter()
            with torch.inference_mode():
                if packed:
                    scores = self._score_packed(seqs, choice_ids, shared, prefix)
                else:
                    ids, mask = (t.to(self.device) for t in self._left_pad(seqs))
                    if shared is None:
                        scores = self._score_batch(ids, mask, choice_ids, prefix)
                    else:
                        scores = self._score_one_pass(ids, mask, choice_ids, shared, prefix)
            share = (time.perf_counter() - t0) / len(batch)
            for row, i in enumerate(batch):
                lp = tuple(float(x) for x in scores[row])
                results[i] = ChoiceScores(max(range(len(choices)), key=lambda j: lp[j]), lp,
                                          len(encoded[i][0]), share, encoded[i][1])
            if progress:
                progress(len(batch))

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
        return ids, mask

    def _score_batch(self, ids: torch.Tensor, mask: torch.Tensor, choice_ids: list[list[int]],
                     prefix: PrefixKV | None = None) -> torch.Tensor:
        n, width = ids.shape
        # transformers 5.2x names the KV cache `cache` (`past_key_values` warns); earlier 5.x did not.
        kw = cache_kw(self.model)
        # Positions count real tokens only, so left padding does not shift them.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        past = {}
        if prefix:  # [prefix | padding | suffix], the prefix from the cache
            positions = positions + prefix.length
            mask = torch.cat([torch.ones((n, prefix.length), dtype=mask.dtype, device=mask.device), mask], 1)
            past[kw] = prefix.expand(n, self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **past)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        cache = out[kw] if kw in out.keys() else out["past_key_values" if kw == "cache" else "cache"]
        scores = torch.empty((n, len(choice_ids)), dtype=torch.float32)
        for j, cont in enumerate(choice_ids):
            total = first[:, cont[0]].clone()
            if len(cont) > 1:
                rest = torch.tensor(cont[:-1], device=ids.device).expand(n, -1)
                ext_mask = torch.cat([mask, torch.ones((n, len(cont) - 1), dtype=mask.dtype, device=mask.device)], 1)
                ext_pos = positions[:, -1:] + torch.arange(1, len(cont), device=ids.device)
                more = self.model(input_ids=rest, attention_mask=ext_mask, position_ids=ext_pos,
                                  use_cache=True, **{kw: cache}).logits
                logp = torch.log_softmax(more.float(), dim=-1)
                target = torch.tensor(cont[1:], device=ids.device)
                total += logp[:, torch.arange(len(cont) - 1), target].sum(-1)
                cache.crop(-(len(cont) - 1))  # back to the prompt alone
            scores[:, j] = total.cpu()
        return scores

    def _score_one_pass(self, ids: torch.Tensor, mask: torch.Tensor, choice_ids: list[list[int]],
                        shared: list[int], prefix: PrefixKV | None = None) -> torch.Tensor:
        """Every choice from one forward pass over [prompt | shared run]: the logits at
        the prompt's last token and at each token of the run (`_shared_run`)."""
        n, k = ids.shape[0], len(shared)
        kw = cache_kw(self.model)
        if k:
            run = torch.tensor(shared, dtype=ids.dtype, device=ids.device).expand(n, -1)
            ids = torch.cat([ids, run], 1)
            mask = torch.cat([mask, torch.ones((n, k), dtype=mask.dtype, device=mask.device)], 1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        past = {}
        if prefix:
            positions = positions + prefix.length
            mask = torch.cat([torch.ones((n, prefix.length), dtype=mask.dtype, device=mask.device), mask], 1)
            past[kw] = prefix.expand(n, self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=bool(prefix),
                         logits_to_keep=k + 1, **past)
        logp = torch.log_softmax(out.logits[:, -(k + 1):].float(), dim=-1)  # (n, k + 1, vocab)
        scores = torch.empty((n, len(choice_ids)), dtype=torch.float32)
        for j, cont in enumerate(choice_ids):
            steps = torch.arange(len(cont), device=logp.device)
            scores[:, j] = logp[:, steps, torch.tensor(cont, device=logp.device)].sum(-1).cpu()
        return scores


    def _score_packed(self, seqs: list[list[int]], choice_ids: list[list[int]], shared: list[int],
                      prefix: PrefixKV | None = None) -> torch.Tensor:
        """What `_score_one_pass` gives, from rows that hold several prompts each and no
        padding to speak of (bench/backends/packing.py); the LM head on scored columns only."""
        k = len(shared)
        start = prefix.length if prefix else 0
        p = packing.pack([s + shared for s in seqs], k + 1, self.pad_token_id, start)
        mask = p.mask.to(self.device)
        if getattr(self.model.config, "_attn_implementation", None) == "eager":
            mask = packing.additive(mask, next(self.model.parameters()).dtype)
        past = {cache_kw(self.model): prefix.expand(p.ids.shape[0], self.model.config)} if prefix else {}
        out = self.model(input_ids=p.ids.to(self.device), attention_mask=mask, position_ids=p.positions.to(self.device),
                         use_cache=bool(prefix), logits_to_keep=p.keep, **past)
        logits = out.logits[:, -p.keep:]
        rows = torch.tensor([r for r, _ in p.tails], device=logits.device)
        cols = torch.tensor([c for _, c in p.tails], device=logits.device)[:, None] + torch.arange(k + 1,
                                                                                                   device=logits.device)
        logp = torch.log_softmax(logits[rows[:, None], cols].float(), dim=-1)  # (n, k + 1, vocab)
        scores = torch.empty((len(seqs), len(choice_ids)), dtype=torch.float32)
        for j, cont in enumerate(choice_ids):
            steps = torch.arange(len(cont), device=logp.device)
            scores[:, j] = logp[:, steps, torch.tensor(cont, device=logp.device)].sum(-1).cpu()
        return scores


def _shared_run(choice_ids: list[list[int]]) -> list[int] | None:
    """The run of tokens that holds every choice's tokens but its last as a prefix (the
    longest such "all but last"), or None when the choices branch earlier."""
    run = max((c[:-1] for c in choice_ids), key=len)
    return run if all(run[:len(c) - 1] == c[:-1] for c in choice_ids) else None


def load(spec, ctx) -> HFBackend:
    """The registry's entry point (`bench.backends.load_lm`)."""
    ctx.log(f"loading model {spec.options.model} ...")
    return load_hf(spec.options.model, device=ctx.device, max_context=ctx.max_context,
                   trust_remote_code=ctx.trust_remote_code, log=ctx.log,
                   dtype=getattr(ctx, "dtype", "auto"))


def load_hf(spec: str = DEFAULT_MODEL, device: str | None = None, max_context: int = 2048,
               trust_remote_code: bool = False, log=print, dtype: str = "auto"):
    """The model and tokenizer `spec` names, on `device`, as an `HFBackend`, with weights in
    `dtype` (auto, float32, bfloat16: bench/dtypes.py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench import dtypes
    from bench.models import (_folder_fingerprint, attention_implementation, converted_gguf,
                              resolve_device, resolve_source)

    source = resolve_source(spec)
    device = resolve_device(device)
    if source.kind == "gguf":
        folder, key = converted_gguf(Path(source.location), log)
        location, fingerprint = str(folder), f"gguf:{key}"
    else:
        location = source.location
        fingerprint = f"{source.kind}:{_folder_fingerprint(Path(location)) if source.kind == 'folder' else spec}"
    agreement = dtypes.recorded_agreement(fingerprint) if dtype == "auto" and device == "cpu" else None
    dtype_name, why = dtypes.resolve(dtype, device, agreement=agreement)
    weights = fingerprint  # the agreement check is recorded per weights, whatever the dtype
    if dtype == "auto":
        log(f"dtype {dtype_name} ({why})")
    try:
        tok = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
        kwargs = dict(dtype=getattr(torch, dtype_name), trust_remote_code=trust_remote_code, use_safetensors=True)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                location, attn_implementation=attention_implementation(device), **kwargs)
        except (ValueError, ImportError):  # an architecture without SDPA/FA2 support
            model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as exc:
        hint = (" Nothing is fetched from a model hub on machines without one; pass a local folder "
                "or a .gguf file." if source.kind == "hub" else "")
        raise BenchError(f"could not load model {spec!r}: {exc}.{hint}") from exc
    model.to(device).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    limit = getattr(model.config, "max_position_embeddings", max_context) or max_context
    template = getattr(tok, "chat_template", "") or ""
    fingerprint += ":" + hashlib.sha256(template.encode()).hexdigest()[:8]
    if dtype_name != "float32":  # fp32 keys stay as they were; any other dtype gets its own
        fingerprint += f":{dtype_name}"
    return HFBackend(model=model, tokenizer=tok, name=spec, fingerprint=fingerprint,
                       device=device, max_context=min(limit, max_context),
                       extra={"dtype": dtype_name, "dtype_reason": why, "weights": weights,
                              "attention": getattr(model.config, "_attn_implementation", None),
                              "parameters": sum(p.numel() for p in model.parameters())})



class _FirstTokenClock(LogitsProcessor):
    """Notes when the first token's logits are ready (after the prompt's forward pass);
    changes no score. Time to first token without a streamer, at any batch size."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: float | None = None

    def __call__(self, input_ids, scores):
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.start
        return scores


def _eos_ids(model: Any, tok: Any) -> list[int]:
    ids = {tok.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, (list, tuple)):
        ids.update(gen_eos)
    return sorted(i for i in ids if i is not None)

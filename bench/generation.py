"""One loaded causal LM + tokenizer, shared by every strategy in a process.

Batched generation and choice scoring live here and nowhere else:
- generation sorts prompts by length (less padding), left-pads, runs greedy decoding
  under `torch.inference_mode`, and returns outputs in the caller's order;
- choice scoring computes the summed log-likelihood of each label after the prompt,
  batching every (prompt, label) pair, right-padded.
Per-query latency here is the batch's wall time shared equally by its queries.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch

Progress = Callable[[int], None]  # called with the number of queries just finished


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    truncated: bool = False


@dataclass(frozen=True)
class ChoiceScores:
    best: int
    logprobs: tuple[float, ...]
    prompt_tokens: int
    latency_s: float
    truncated: bool = False


@dataclass(frozen=True)
class ModelHandle:
    model: Any
    tokenizer: Any
    name: str
    fingerprint: str  # changes whenever weights, tokenizer or template change
    device: str = "cpu"
    max_context: int = 2048
    system_prompt: str | None = None
    extra: dict = field(default_factory=dict)

    # -- prompts ---------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, user: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None) -> str:
        """A conversation as the model expects it, ending where the answer starts.
        `shots` are (user, assistant) demonstration turns placed before `user`."""
        system = system if system is not None else self.system_prompt
        if self.has_chat_template:
            messages = [{"role": "system", "content": system}] if system else []
            for question, answer in shots:
                messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            messages.append({"role": "user", "content": user})
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        text = f"{system}\n\n" if system else ""
        text += "".join(f"{q}\nAnswer: {a}\n\n" for q, a in shots)
        return text + f"{user}\nAnswer: "

    @property
    def end_of_answer(self) -> str:
        """What the model writes after an answer (the chat turn end, or EOS)."""
        if self.has_chat_template and "<|im_end|>" in (self.tokenizer.chat_template or ""):
            return "<|im_end|>"
        return self.tokenizer.eos_token or "\n"

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def with_model(self, model: Any, fingerprint: str) -> "ModelHandle":
        """The same tokenizer and settings over other weights (a LoRA-wrapped model)."""
        return replace(self, model=model, fingerprint=fingerprint)

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
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i][0]))
        results: list[Generation | None] = [None] * len(prompts)
        self.model.eval()
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                seq = encoded[i][0]
                ids[row, width - len(seq):] = torch.tensor(seq)
                mask[row, width - len(seq):] = 1
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                    pad_token_id=pad_id, eos_token_id=eos_ids)
            share = (time.perf_counter() - t0) / len(batch)
            for row, i in enumerate(batch):
                new = out[row, width:].tolist()
                n = next((k for k, t in enumerate(new) if t in eos_ids), len(new))
                text = tok.decode(new[:n], skip_special_tokens=True).strip()
                results[i] = Generation(text, len(encoded[i][0]), n + (n < len(new)), share, encoded[i][1])
            if progress:
                progress(len(batch))
        return results  # type: ignore[return-value]

    # -- choice scoring -------------------------------------------------------
    def score_choices(self, prompts: Sequence[str], choices: Sequence[str], batch_size: int = 16,
                      progress: Progress | None = None) -> list[ChoiceScores]:
        choice_ids = [self.encode(c) for c in choices]
        room = max(len(c) for c in choice_ids)
        encoded = [self._fit(self.encode(p), room) for p in prompts]
        pairs = [(i, j) for i in range(len(prompts)) for j in range(len(choices))]
        pairs.sort(key=lambda p: -(len(encoded[p[0]][0]) + len(choice_ids[p[1]])))
        logprobs = [[0.0] * len(choices) for _ in prompts]
        spent = [0.0] * len(prompts)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.model.eval()
        done_prompts: set[int] = set()
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            seqs = [encoded[i][0] + choice_ids[j] for i, j in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, s in enumerate(seqs):
                ids[row, :len(s)] = torch.tensor(s)
                mask[row, :len(s)] = 1
            t0 = time.perf_counter()
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                logp = torch.log_softmax(logits.float(), dim=-1)
                for row, (i, j) in enumerate(batch):
                    n_ctx, cont = len(encoded[i][0]), choice_ids[j]
                    positions = torch.arange(n_ctx - 1, n_ctx - 1 + len(cont), device=logp.device)
                    target = torch.tensor(cont, device=logp.device)
                    logprobs[i][j] = float(logp[row, positions, target].sum())
            share = (time.perf_counter() - t0) / len(batch)
            for i, _ in batch:
                spent[i] += share
            if progress:
                finished = {i for i, _ in batch} - done_prompts
                done_prompts |= finished
                progress(len(finished))
        return [ChoiceScores(max(range(len(choices)), key=lambda j: lp[j]), tuple(lp),
                             len(encoded[i][0]), spent[i], encoded[i][1])
                for i, lp in enumerate(logprobs)]


def _eos_ids(model: Any, tok: Any) -> list[int]:
    ids = {tok.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, (list, tuple)):
        ids.update(gen_eos)
    return sorted(i for i in ids if i is not None)

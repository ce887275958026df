"""A static prefix cache for the hf backend: k-shot prompting and RAG's corpus-mode
demonstrations put the same system prompt, instruction and demonstrations before every
query, so that prefix's KV is computed once and every batch continues from a copy.

Rules that keep results equal to the uncached path:
- the prefix is a run of whole *tokens* shared by every prompt of a call (each prompt is
  tokenised whole first), so the tokens after it are exactly the tokens the uncached path
  runs; at least one token of every prompt stays outside it;
- a batch is laid out as [prefix | left padding | suffix], positions count real tokens
  only, so every real token sits at the same position as in [padding | prefix | suffix];
- the memo is keyed by the prefix ids and the model object and its parameter count
  (attaching or removing an adapter changes it); whoever changes weights in place
  without that calls `forget()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

MIN_PREFIX = 16  # shorter shared starts are not worth a cache copy per batch
_MEMO_SIZE = 4


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest run of tokens every sequence starts with, leaving at least
    one token of the shortest sequence outside it."""
    if not seqs:
        return 0
    first, limit = seqs[0], min(len(s) for s in seqs) - 1
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return max(n, 0)


@dataclass(frozen=True)
class PrefixKV:
    ids: tuple[int, ...]
    layers: tuple[tuple[Any, Any], ...]  # per layer (keys, values), batch 1

    @property
    def length(self) -> int:
        return len(self.ids)

    def expand(self, n: int, config: Any):
        """A fresh cache holding the prefix for `n` rows (the forward pass appends to it)."""
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=[(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1))
                                            for k, v in self.layers], config=config)


def cache_kw(model: Any) -> str:
    """The forward/generate keyword of the KV cache (transformers 5.2x: `cache`)."""
    import inspect

    model = getattr(model, "shared", model)  # an adapter's view: the shared model's forward
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class PrefixMemo:
    """The few prefixes a backend has computed, most recent last."""

    def __init__(self) -> None:
        self._items: dict[tuple, PrefixKV] = {}

    def forget(self) -> None:
        self._items.clear()

    @staticmethod
    def _owner(model: Any) -> tuple:
        return id(model), sum(1 for _ in model.parameters())

    def find(self, model: Any, seqs: Sequence[Sequence[int]]) -> PrefixKV | None:
        """The longest remembered prefix of every sequence, or a new one computed from
        their common prefix when it is long enough."""
        owner = self._owner(model)
        shortest = min(len(s) for s in seqs)
        best = None
        for (who, ids), kv in self._items.items():
            if who == owner and len(ids) < shortest and all(tuple(s[:len(ids)]) == ids for s in seqs):
                if best is None or len(ids) > best.length:
                    best = kv
        if len(seqs) >= 2:
            n = common_prefix(seqs)
            if n >= MIN_PREFIX and (best is None or n > best.length):
                best = self._compute(model, tuple(seqs[0][:n]), owner)
        return best

    def _compute(self, model: Any, ids: tuple[int, ...], owner: tuple) -> PrefixKV:
        import torch

        device = next(model.parameters()).device
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1)
        cache = out["cache"] if "cache" in out.keys() else out["past_key_values"]
        kv = PrefixKV(ids, tuple((layer.keys, layer.values) for layer in cache.layers))
        if len(self._items) >= _MEMO_SIZE:
            self._items.pop(next(iter(self._items)))
        self._items[(owner, ids)] = kv
        return kv

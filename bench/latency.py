"""Like-for-like latency: warm-up, then a batch-1 sample through the strategy itself.

The batched predict pass measures throughput; a user waiting on one answer sees the
batch-1 latency, so every cell also answers a sample of queries one at a time:
- `warm_up` answers a few queries first and throws the result away (the first calls
  pay for allocator growth, kernel selection and lazy imports);
- `probe` times `strategy.predict(artifacts, [example])` end to end, so RAG's
  retrieval is inside its total, and records time to first token and retrieval time
  from the predictions; it never reads a cache, so its numbers are always live.
A strategy may offer other ways to serve the same artifacts (a LoRA adapter merged
into the weights) through an optional `latency_variants(artifacts)` that yields
(name, artifacts); each is probed on the same sample.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np

PERCENTILES = (50, 95, 99)


def sample_examples(examples: Sequence[Any], n: int) -> list[Any]:
    """The first `n` examples: the same ones for every strategy of a task, so the
    batch-1 numbers compare like for like."""
    return list(examples[: max(0, n)])


def warm_up(strategy, artifacts, examples: Sequence[Any], n: int,
            clock: Callable[[], float] = time.perf_counter) -> float:
    """Answer `n` queries one at a time and discard them; returns the seconds spent."""
    t0 = clock()
    for ex in list(examples[: max(0, n)]):
        strategy.predict(artifacts, [ex])
    return clock() - t0


def _ms(values: Iterable[float | None]) -> np.ndarray:
    return np.asarray([v * 1000.0 for v in values if v is not None], dtype=float)


def _percentiles(prefix: str, ms: np.ndarray) -> dict[str, float | None]:
    if not ms.size:
        return {f"{prefix}_p{p}_ms": None for p in PERCENTILES}
    return {f"{prefix}_p{p}_ms": round(float(v), 3) for p, v in zip(PERCENTILES, np.percentile(ms, PERCENTILES))}


def probe(strategy, artifacts, examples: Sequence[Any], progress: Callable[[int], None] | None = None,
          clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Batch-1 latency of `strategy` over `examples`: percentiles of the end-to-end
    time, of time to first token and of retrieval time, plus the raw samples."""
    totals, ttft, retrieval, completion = [], [], [], []
    for ex in examples:
        t0 = clock()
        (pred,) = strategy.predict(artifacts, [ex])
        totals.append(clock() - t0)
        ttft.append(getattr(pred, "first_token_s", None))
        retrieval.append(getattr(pred, "retrieval_s", None))
        completion.append(pred.completion_tokens)
        if progress:
            progress(1)
    total_ms = _ms(totals)
    out: dict[str, Any] = {"n": len(totals), **_percentiles("latency", total_ms),
                           **_percentiles("ttft", _ms(ttft))}
    ret_ms = _ms(r for r in retrieval if r)
    out["retrieval_mean_ms"] = round(float(ret_ms.mean()), 3) if ret_ms.size else None
    out["retrieval_share"] = (round(float(ret_ms.sum() / total_ms.sum()), 4)
                              if ret_ms.size and total_ms.sum() > 0 else None)
    gen_s = float(np.sum(totals))
    out["tokens_per_s"] = round(sum(completion) / gen_s, 3) if gen_s > 0 and sum(completion) else None
    out["samples_ms"] = [round(float(v), 3) for v in total_ms]
    return out


def probe_cell(strategy, artifacts, examples: Sequence[Any], sample: int, warmup: int,
               open_bar: Callable[[str, int], Any] | None = None, label: str = "",
               clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Warm up, then probe the strategy's artifacts and every variant it offers.
    Returns {"default": {...}, "<variant>": {...}, "warmup_s": s}; empty when sample is 0."""
    chosen = sample_examples(examples, sample)
    if not chosen:
        return {}
    out: dict[str, Any] = {"warmup_s": round(warm_up(strategy, artifacts, examples, warmup, clock), 4)}
    out["default"] = _probe_one(strategy, artifacts, chosen, open_bar, f"{label}: latency at batch 1", clock)
    make = getattr(strategy, "latency_variants", None)
    # Lazily: a variant may change the artifacts in place (merging an adapter), so it
    # is made only after the default has been measured.
    for name, variant in (make(artifacts) if make else ()):
        warm_up(strategy, variant, examples, warmup, clock)
        out[name] = _probe_one(strategy, variant, chosen, open_bar, f"{label}: latency at batch 1 ({name})", clock)
    return out


def _probe_one(strategy, artifacts, chosen, open_bar, title: str, clock) -> dict[str, Any]:
    if open_bar is None:
        return probe(strategy, artifacts, chosen, clock=clock)
    with open_bar(title, len(chosen)) as bar:
        return probe(strategy, artifacts, chosen, progress=bar.advance, clock=clock)

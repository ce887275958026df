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

`probe_group` is the comparable form: once every strategy of a task is prepared, each
query is answered by every strategy in turn (round-robin, the starting strategy rotated
per query), so a burst of machine load or a thermal dip falls on all of them alike and
per-query latencies pair up query by query. Each probe window records the machine's
load (1-minute load average and CPU percent over the window), so a reader can tell a
busy machine from a slow strategy. `probe_cell` is the fallback for a cell probed alone.
"""
from __future__ import annotations

import os
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
    out["query_ids"] = [str(getattr(ex, "id", i)) for i, ex in enumerate(examples)]
    return out


class LoadWindow:
    """The machine's load over a probe window: the 1-minute load average at both ends
    and the CPU percent (all cores, 100 = every core busy) over the window."""

    def __enter__(self) -> "LoadWindow":
        self.start = _loadavg()
        self._psutil = _cpu_percent()  # primes psutil's counter; the next call covers the window
        self.facts: dict[str, Any] = {}
        return self

    def __exit__(self, *exc: Any) -> None:
        self.facts = {"loadavg_1m_start": self.start, "loadavg_1m_end": _loadavg(),
                      "cpu_percent": _cpu_percent() if self._psutil is not None else None,
                      "cpu_count": os.cpu_count()}


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not on every platform
        return None


def _cpu_percent() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return float(psutil.cpu_percent(interval=None))


def probe_cell(strategy, artifacts, examples: Sequence[Any], sample: int, warmup: int,
               open_bar: Callable[[str, int], Any] | None = None, label: str = "",
               clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Warm up, then probe the strategy's artifacts and every variant it offers.
    Returns {"default": {...}, "<variant>": {...}, "warmup_s": s}; empty when sample is 0."""
    chosen = sample_examples(examples, sample)
    if not chosen:
        return {}
    out: dict[str, Any] = {"warmup_s": round(warm_up(strategy, artifacts, examples, warmup, clock), 4)}
    with LoadWindow() as load:
        out["default"] = _probe_one(strategy, artifacts, chosen, open_bar, f"{label}: latency at batch 1", clock)
    out["default"].update(load=load.facts, interleaved=False)
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


def probe_group(entries: Sequence[tuple[str, Any, Any]], examples: Sequence[Any], sample: int, warmup: int,
                open_bar: Callable[[str, int], Any] | None = None,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, dict[str, Any]]:
    """Batch-1 latency of several prepared strategies of one task, interleaved.

    entries: (label, strategy, artifacts), all prepared. Every entry is warmed up, then
    query i of the sample is answered by every entry in turn, starting with entry
    i mod len(entries) (so no strategy always runs first after another's cache
    footprint). Variants (a merged adapter) are made only after every default has been
    measured (making one may change its artifacts in place) and are interleaved the
    same way among themselves. Returns {label: the same shape `probe_cell` returns}; each
    probe holds "interleaved" (True with two or more entries) and its window's "load".
    """
    chosen = sample_examples(examples, sample)
    if not chosen or not entries:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for label, strategy, artifacts in entries:
        out[label] = {"warmup_s": round(warm_up(strategy, artifacts, examples, warmup, clock), 4)}
    for name, probes in _round_robin([(lb, st, art) for lb, st, art in entries], chosen, open_bar,
                                     "latency at batch 1, interleaved", clock).items():
        out[name]["default"] = probes
    variants: list[tuple[str, str, Any, Any]] = []
    for label, strategy, artifacts in entries:
        make = getattr(strategy, "latency_variants", None)
        for vname, variant in (make(artifacts) if make else ()):
            warm_up(strategy, variant, examples, warmup, clock)
            variants.append((label, vname, strategy, variant))
    keyed = [(f"{label}\x00{vname}", strategy, variant) for label, vname, strategy, variant in variants]
    for key, probes in _round_robin(keyed, chosen, open_bar, "latency at batch 1 (variants)", clock).items():
        label, vname = key.split("\x00", 1)
        out[label][vname] = probes
    return out


def _round_robin(entries: Sequence[tuple[str, Any, Any]], chosen: Sequence[Any], open_bar, title: str,
                 clock) -> dict[str, dict[str, Any]]:
    if not entries:
        return {}
    timed: dict[str, list] = {label: [] for label, _, _ in entries}
    k = len(entries)

    def run(bar) -> None:
        for i, ex in enumerate(chosen):
            for j in range(k):
                label, strategy, artifacts = entries[(i + j) % k]
                t0 = clock()
                (pred,) = strategy.predict(artifacts, [ex])
                timed[label].append((clock() - t0, pred))
                if bar is not None:
                    bar.advance(1)

    with LoadWindow() as load:
        if open_bar is None:
            run(None)
        else:
            with open_bar(title, len(chosen) * k) as bar:
                run(bar)
    return {label: {**_summarise(pairs, chosen), "load": load.facts, "interleaved": k > 1}
            for label, pairs in timed.items()}


class _Replay:
    """Feeds `probe` the already-timed predictions, so both paths share one summary."""

    def __init__(self, pairs: list) -> None:
        self.pairs, self.i = pairs, 0

    def predict(self, artifacts, examples):
        self.i += 1
        return [self.pairs[self.i - 1][1]]


def _summarise(pairs: list, chosen: Sequence[Any]) -> dict[str, Any]:
    return probe(_Replay(pairs), None, chosen, clock=_Cumulative([t for t, _ in pairs]))


class _Cumulative:
    """A clock that advances by the recorded duration between each start and stop."""

    def __init__(self, durations: list[float]) -> None:
        self.durations, self.calls, self.now = durations, 0, 0.0

    def __call__(self) -> float:
        if self.calls % 2 == 1:  # a stop: the recorded duration has passed
            self.now += self.durations[self.calls // 2]
        self.calls += 1
        return self.now

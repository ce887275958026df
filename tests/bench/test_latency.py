"""Batch-1 latency probe, time to first token, merged-adapter variant, and the rule
that nothing served from a cache counts as latency."""
import math

import numpy as np
import pytest

from bench.latency import probe, probe_cell
from strategies.base import Artifacts, Prediction


class Clocked:
    """A strategy whose predict 'takes' scripted seconds on a fake clock."""

    name = "clocked"

    def __init__(self, clock, seconds):
        self.clock, self.seconds, self.calls = clock, list(seconds), []

    def predict(self, artifacts, examples, progress=None):
        self.calls.append((artifacts.state.get("variant", "default"), [e.id for e in examples]))
        out = []
        for ex in examples:
            spent = self.seconds.pop(0)
            self.clock.now += spent
            out.append(Prediction(ex.id, "x", spent, 5, 2, first_token_s=spent / 4, retrieval_s=spent / 10))
        return out

    def latency_variants(self, artifacts):
        # Records when it is made: it must come after the default's probe.
        self.calls.append(("made-variant", []))
        yield "merged", Artifacts("clocked", None, None, state={"variant": "merged"})


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def _examples(toy_task, n):
    return list(toy_task.test[:n])


def test_probe_percentiles_ttft_and_retrieval_from_per_query_times(toy_task):
    clock = Clock()
    times = [0.01 * (i + 1) for i in range(5)]  # 10..50 ms
    strat = Clocked(clock, times)
    out = probe(strat, Artifacts("clocked", None, None), _examples(toy_task, 5), clock=clock)
    assert out["n"] == 5
    assert out["latency_p50_ms"] == pytest.approx(30.0)
    assert out["latency_p95_ms"] == pytest.approx(float(np.percentile([10, 20, 30, 40, 50], 95)))
    assert out["latency_p99_ms"] == pytest.approx(float(np.percentile([10, 20, 30, 40, 50], 99)))
    assert out["ttft_p50_ms"] == pytest.approx(7.5)
    assert out["retrieval_mean_ms"] == pytest.approx(3.0) and out["retrieval_share"] == pytest.approx(0.1)
    assert out["tokens_per_s"] == pytest.approx(10 / 0.15, abs=1e-3)
    assert [c[1] for c in strat.calls] == [[e.id] for e in _examples(toy_task, 5)]  # one query per call


def test_warmup_is_discarded_and_variants_run_after_the_default(toy_task):
    clock = Clock()
    # Two slow warm-up queries (1 s), then 3 default queries, 2 variant warm-ups, 3 variant ones.
    strat = Clocked(clock, [1.0, 1.0, 0.02, 0.02, 0.02, 1.0, 1.0, 0.01, 0.01, 0.01])
    out = probe_cell(strat, Artifacts("clocked", None, None, state={}), _examples(toy_task, 6), sample=3, warmup=2,
                     clock=clock)
    assert out["warmup_s"] == pytest.approx(2.0)
    # The slow first calls are not in the samples: every probed query took 20 / 10 ms.
    assert out["default"]["latency_p99_ms"] == pytest.approx(20.0)
    assert out["merged"]["latency_p99_ms"] == pytest.approx(10.0)
    kinds = [c[0] for c in strat.calls]
    assert kinds.index("made-variant") > kinds.index("default") + 3  # warm-up + 3 probes first
    assert set(out) == {"warmup_s", "default", "merged"}
    assert out["default"]["n"] == 3 and out["merged"]["n"] == 3
    assert out["default"]["ttft_p50_ms"] == pytest.approx(5.0) and out["merged"]["ttft_p50_ms"] == pytest.approx(2.5)


def test_no_sample_means_no_probe(toy_task):
    strat = Clocked(Clock(), [])
    assert probe_cell(strat, Artifacts("clocked", None, None), _examples(toy_task, 3), sample=0, warmup=2) == {}
    assert strat.calls == []


def test_generation_reports_time_to_first_token(tiny):
    gens = tiny.generate(["hello there", "a much longer prompt with more words in it"], max_new_tokens=6,
                         batch_size=2)
    for g in gens:
        assert g.first_token_s is not None and 0 < g.first_token_s
        # The batch's first token comes before its end; latency is the batch time shared by two.
        assert g.first_token_s <= g.latency_s * 2 + 1e-6


def test_cached_rows_never_feed_latency():
    import pandas as pd

    from reports.summary import _reduce_rows

    rows = pd.DataFrame({"task": "t", "strategy": "s", "model": "m", "seed": 0, "score": 1.0,
                         "exact_match": None, "f1": None, "recall_at_k": None,
                         "latency_s": [0.5, 0.7, 0.0001, 0.0001], "cached": [False, False, True, True],
                         "prompt_tokens": 10, "completion_tokens": 1, "truncated": False, "retrieval_s": 0.0})
    out = _reduce_rows("c", rows)
    assert out["latency_p50_ms"] == pytest.approx(600.0)  # the two live rows only
    all_cached = _reduce_rows("c", rows.assign(cached=True))
    assert math.isnan(all_cached["latency_p50_ms"])  # unknown, not "0.1 ms"


def test_summary_takes_batch1_latency_from_the_probe():
    import pandas as pd

    from reports.summary import _apply_probe

    frame = pd.DataFrame({"latency_p50_ms": [999.0], "latency_mode": ["batched"]})
    probe_doc = {"default": {"n": 4, "latency_p50_ms": 12.0, "latency_p95_ms": 20.0, "latency_p99_ms": 21.0,
                             "ttft_p50_ms": 3.0, "ttft_p95_ms": 4.0, "retrieval_mean_ms": 1.0,
                             "retrieval_share": 0.05},
                 "merged": {"n": 4, "latency_p50_ms": 10.0}}
    _apply_probe(frame, 0, probe_doc)
    assert frame.loc[0, "latency_p50_ms"] == 12.0 and frame.loc[0, "latency_mode"] == "batch-1"
    assert frame.loc[0, "merged_latency_p50_ms"] == 10.0 and frame.loc[0, "ttft_p95_ms"] == 4.0

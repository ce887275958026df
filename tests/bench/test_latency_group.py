"""Interleaved batch-1 probes (`probe_group`), the machine-load record, and the latency
comparison: identical distributions tie, a planted 2x slowdown separates."""
import numpy as np
import pytest

from bench.latency import probe_group
from bench.stats import latency_ratio, quantile_ci
from strategies.base import Artifacts, Prediction


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


class Timed:
    """predict 'takes' `seconds(example)` on the shared fake clock and logs the call."""

    def __init__(self, name, clock, seconds, log, variant=None):
        self.name, self.clock, self.seconds, self.log, self.variant = name, clock, seconds, log, variant

    def predict(self, artifacts, examples, progress=None):
        who = artifacts.state.get("who", self.name)
        out = []
        for ex in examples:
            self.log.append((who, ex.id))
            spent = self.seconds(who, ex)
            self.clock.now += spent
            out.append(Prediction(ex.id, "x", spent, 5, 2, first_token_s=spent / 2))
        return out

    def latency_variants(self, artifacts):
        if self.variant:
            self.log.append(("made-variant", None))
            yield self.variant, Artifacts(self.name, None, None, state={"who": f"{self.name}+{self.variant}"})


def test_round_robin_same_queries_rotating_start_and_variants_last(toy_task):
    clock, log = Clock(), []
    speed = {"a": 0.010, "b": 0.020, "c": 0.030, "c+merged": 0.005}
    seconds = lambda who, ex: speed[who]  # noqa: E731
    entries = [(n, Timed(n, clock, seconds, log, "merged" if n == "c" else None),
                Artifacts(n, None, None, state={"who": n})) for n in ("a", "b", "c")]
    out = probe_group(entries, toy_task.test, sample=4, warmup=1, clock=clock)
    assert set(out) == {"a", "b", "c"} and set(out["c"]) == {"warmup_s", "default", "merged"}
    probed = [e for e in log if e[0] != "made-variant"][3:]  # after one warm-up query each
    ids = [ex.id for ex in toy_task.test[:4]]
    # query by query, every strategy in turn, the first one rotating
    assert [w for w, _ in probed[:12]] == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert [q for _, q in probed[:12]] == [i for i in ids for _ in range(3)]
    assert log.index(("made-variant", None)) > 12  # the merge waits until every default is measured
    for name in ("a", "b", "c"):
        d = out[name]["default"]
        assert d["samples_ms"] == pytest.approx([speed[name] * 1000] * 4) and d["query_ids"] == ids
        assert d["interleaved"] is True and d["n"] == 4
        assert d["load"]["cpu_count"] >= 1 and "loadavg_1m_start" in d["load"]
    assert out["c"]["merged"]["latency_p50_ms"] == pytest.approx(5.0)
    assert out["a"]["default"]["ttft_p50_ms"] == pytest.approx(5.0)


def _lognormal(seed, n=40, scale=1.0):
    rng = np.random.default_rng(seed)
    base = rng.lognormal(np.log(50.0), 0.3, n)  # per-query cost: a long prompt is slow for all
    return base, rng


def test_identical_latency_distributions_tie_and_a_2x_slowdown_separates():
    ties = separated = 0
    for seed in range(30):
        base, rng = _lognormal(seed)
        a = base * rng.lognormal(0.0, 0.1, base.size)
        b = base * rng.lognormal(0.0, 0.1, base.size)
        ties += latency_ratio(a, b, paired=True, seed=seed)["verdict"] == "tie"
        slow = latency_ratio(2 * b, a, paired=True, seed=seed)
        separated += slow["verdict"] == "a slower" and 1.6 < slow["ratio"] < 2.5
        # the unpaired form (different queries or moments) reaches the same calls here
        assert latency_ratio(2 * b, a, paired=False, seed=seed)["verdict"] == "a slower"
    assert ties >= 26  # a 95% interval: about 1 in 20 false calls
    assert separated == 30


def test_p50_interval_brackets_the_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.lognormal(3, 0.5, 16), rng.lognormal(3, 0.5, 400)
    p, lo, hi = quantile_ci(small, 50)
    assert lo <= p <= hi and lo < hi
    _, lo2, hi2 = quantile_ci(large, 50)
    assert (hi2 - lo2) < (hi - lo)
    assert lo2 < np.exp(3) < hi2  # the true median of the lognormal


def test_a_cell_probed_alone_says_so_and_records_its_load(toy_task):
    from bench.latency import probe_cell

    clock, log = Clock(), []
    strat = Timed("a", clock, lambda who, ex: 0.01, log)
    out = probe_cell(strat, Artifacts("a", None, None, state={"who": "a"}), toy_task.test, sample=3, warmup=0,
                     clock=clock)
    assert out["default"]["interleaved"] is False and out["default"]["n"] == 3
    assert set(out["default"]["load"]) == {"loadavg_1m_start", "loadavg_1m_end", "cpu_percent", "cpu_count"}

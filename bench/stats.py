"""Statistics over per-example scores: intervals, paired tests, macro-F1, latency percentiles.

Rules:
- Pure functions over numpy arrays or plain sequences; no torch, no pandas.
- Every random draw comes from `numpy.random.default_rng(seed)`, so a report rebuilt from
  the same rows prints the same intervals.
- NaN entries (an example that produced no score) are dropped; for paired inputs the pair
  is dropped, so both sides are always judged on the same examples.
- Intervals are percentile bootstraps of the mean: no normality assumption, and a score
  near 0 or 1 gets an interval that stays inside [0, 1].
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy.stats import binomtest

VERDICTS = ("a better", "b better", "tie")
# Cap on resample-matrix cells held at once (int64 indices): ~32 MB, whatever n is.
_MAX_CELLS = 4_000_000


def _finite(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    return arr[~np.isnan(arr)]


def _paired(a: Iterable[float], b: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired inputs need the same examples: got {a.size} and {b.size} values")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def _check(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _bootstrap(values: Iterable[float], statistic, n_resamples: int, seed: int) -> np.ndarray:
    """`statistic(resamples, axis=1)` over `n_resamples` resamples (with replacement) of
    `values`. Indices are drawn as a matrix, in row chunks so memory stays bounded for
    large n. Empty input gives an empty array."""
    x = _finite(values)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if x.size == 0:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    rows = max(1, _MAX_CELLS // x.size)
    parts = []
    for start in range(0, n_resamples, rows):
        idx = rng.integers(0, x.size, size=(min(rows, n_resamples - start), x.size))
        parts.append(statistic(x[idx], axis=1))
    return np.concatenate(parts)


def bootstrap_means(values: Iterable[float], n_resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """The means of `n_resamples` resamples (with replacement) of `values`."""
    return _bootstrap(values, np.mean, n_resamples, seed)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_ci(values: Iterable[float], n_resamples: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the sample mean and its percentile-bootstrap interval.

    n = 0 gives (nan, nan, nan); n = 1 gives a zero-width interval at the single value
    (one observation says nothing about spread; the caller should show n beside it).
    """
    _check(n_resamples, confidence)
    x = _finite(values)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    low, high = _interval(bootstrap_means(x, n_resamples, seed), confidence)
    return mean, low, high


def paired_bootstrap_diff(a: Iterable[float], b: Iterable[float], n_resamples: int = 2000,
                          confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean(a - b), low, high) with examples resampled jointly.

    `a` and `b` are per-example scores on the same examples in the same order. Resampling
    the per-example differences is the same as resampling indices jointly, and it removes
    the between-example variance that two independent intervals would double count.
    """
    x, y = _paired(a, b)
    return bootstrap_ci(x - y, n_resamples=n_resamples, confidence=confidence, seed=seed)


def _binary(values: np.ndarray, name: str) -> np.ndarray:
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold only 0/1 values for McNemar's test")
    return values.astype(bool)


def mcnemar_exact(a: Iterable[float], b: Iterable[float]) -> tuple[int, int, float]:
    """(b01, b10, p): exact two-sided McNemar test for 0/1 outcomes on the same examples.

    b01 counts examples `a` got wrong and `b` right, b10 the reverse. Under the null both
    are equally likely, so b01 ~ Binomial(b01 + b10, 0.5). Exact rather than chi-square
    because bench test sets are often small. No discordant pairs gives p = 1.0.
    """
    x, y = _paired(a, b)
    x, y = _binary(x, "a"), _binary(y, "b")
    b01 = int(np.count_nonzero(~x & y))
    b10 = int(np.count_nonzero(x & ~y))
    if b01 + b10 == 0:
        return b01, b10, 1.0
    return b01, b10, float(binomtest(b01, b01 + b10, 0.5, alternative="two-sided").pvalue)


def macro_f1(targets: Sequence[str], outputs: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """Unweighted mean of per-label F1 over `labels` (sorted union of both sides when None).

    Matches scikit-learn's `f1_score(average="macro", labels=labels, zero_division=0)`:
    F1 = 2tp / (2tp + fp + fn), and a label with no true, predicted or correct instance
    (denominator 0) scores 0, so listing a label the model never sees lowers the mean.
    Outputs outside `labels` (a malformed answer) count as a miss for the true label and
    as a false positive for no listed label.
    """
    t = np.asarray(list(targets), dtype=object)
    o = np.asarray(list(outputs), dtype=object)
    if t.shape != o.shape:
        raise ValueError(f"targets and outputs differ in length: {t.size} vs {o.size}")
    labels = sorted(set(t.tolist()) | set(o.tolist())) if labels is None else list(labels)
    if not labels:
        return math.nan
    scores = []
    for label in labels:
        tp = int(np.count_nonzero((t == label) & (o == label)))
        fp = int(np.count_nonzero((t != label) & (o == label)))
        fn = int(np.count_nonzero((t == label) & (o != label)))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def compare_pair(a: Iterable[float], b: Iterable[float], binary: bool, seed: int = 0,
                 n_resamples: int = 2000, confidence: float = 0.95, alpha: float = 0.05,
                 higher_is_better: bool = True) -> dict:
    """Compare two strategies' per-example scores on the same examples.

    Returns n, diff (mean a - b), ci (low, high) of that diff, test ("mcnemar" or
    "bootstrap"), p_value (McNemar's when `binary`, else None: the interval is the test),
    b01/b10 (binary only) and verdict: "tie" when the interval contains 0, or when
    binary and p >= alpha; otherwise the side the sign of diff favours. Requiring both
    for binary scores keeps the verdict conservative where the two could disagree.
    No usable pairs gives diff nan and "tie" (no evidence of a difference).
    """
    x, y = _paired(a, b)
    diff, low, high = paired_bootstrap_diff(x, y, n_resamples=n_resamples, confidence=confidence, seed=seed)
    out: dict = {"n": int(x.size), "diff": diff, "ci": (low, high),
                 "test": "mcnemar" if binary else "bootstrap", "p_value": None}
    if binary:
        out["b01"], out["b10"], out["p_value"] = mcnemar_exact(x, y)
    tie = x.size == 0 or low <= 0.0 <= high or (binary and out["p_value"] >= alpha)
    if tie:
        out["verdict"] = "tie"
    else:
        a_ahead = diff > 0 if higher_is_better else diff < 0
        out["verdict"] = "a better" if a_ahead else "b better"
    return out


def percentiles(latencies_s: Iterable[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """Latency percentiles in milliseconds, keyed "p50_ms", "p95_ms", ... (nan when empty).

    Linear interpolation (numpy's default), the same as the summary table uses.
    """
    x = _finite(latencies_s) * 1000.0
    keys = [f"p{q:g}_ms" for q in qs]
    if x.size == 0:
        return dict.fromkeys(keys, math.nan)
    return {k: float(v) for k, v in zip(keys, np.percentile(x, list(qs)))}


def bootstrap_quantiles(values: Iterable[float], q: float, n_resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """The `q`-quantile (0-100) of each of `n_resamples` resamples of `values`."""
    return _bootstrap(values, lambda a, axis: np.percentile(a, q, axis=axis), n_resamples, seed)


def quantile_ci(values: Iterable[float], q: float, n_resamples: int = 2000, confidence: float = 0.95,
                seed: int = 0) -> tuple[float, float, float]:
    """(quantile, low, high): a percentile (e.g. q=50 for p50) and its percentile-bootstrap
    interval. Fewer than 2 values give a zero-width interval (or nan when empty)."""
    _check(n_resamples, confidence)
    x = _finite(values)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    point = float(np.percentile(x, q))
    if x.size == 1:
        return point, point, point
    low, high = _interval(bootstrap_quantiles(x, q, n_resamples, seed), confidence)
    return point, low, high


def latency_ratio(a: Iterable[float], b: Iterable[float], paired: bool, n_resamples: int = 2000,
                  confidence: float = 0.95, seed: int = 0) -> dict:
    """How many times slower `a` is than `b` at the median, with an interval.

    paired (the same queries in the same order, probed interleaved): the per-query log
    ratio's median is bootstrapped, which removes query-to-query variation (a long
    prompt is slow for every strategy). Unpaired: each side's p50 is bootstrapped
    independently and the ratio of the two taken. Latencies must be > 0. Returns
    ratio, ci (low, high), test ("paired" or "unpaired") and verdict: "a slower",
    "b slower" or "tie" (the interval contains 1).
    """
    _check(n_resamples, confidence)
    if paired:
        x, y = _paired(a, b)
        keep = (x > 0) & (y > 0)
        logs = np.log(x[keep]) - np.log(y[keep])
        if logs.size < 2:
            return {"n": int(logs.size), "ratio": math.nan, "ci": (math.nan, math.nan), "test": "paired",
                    "verdict": "tie"}
        point = float(np.exp(np.median(logs)))
        low, high = (float(np.exp(v)) for v in _interval(bootstrap_quantiles(logs, 50, n_resamples, seed),
                                                            confidence))
        n = int(logs.size)
    else:
        x, y = _finite(a), _finite(b)
        x, y = x[x > 0], y[y > 0]
        if x.size < 2 or y.size < 2:
            return {"n": int(min(x.size, y.size)), "ratio": math.nan, "ci": (math.nan, math.nan),
                    "test": "unpaired", "verdict": "tie"}
        point = float(np.median(x) / np.median(y))
        ratios = bootstrap_quantiles(x, 50, n_resamples, seed) / bootstrap_quantiles(y, 50, n_resamples, seed + 1)
        low, high = _interval(ratios, confidence)
        n = int(min(x.size, y.size))
    verdict = "a slower" if low > 1.0 else "b slower" if high < 1.0 else "tie"
    return {"n": n, "ratio": point, "ci": (low, high), "test": "paired" if paired else "unpaired",
            "verdict": verdict}


def _z(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def min_detectable_diff(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a paired test on `n` examples detects with `power`
    at two-sided `alpha`: (z_{1-alpha/2} + z_{power}) * sd_diff / sqrt(n).

    This is the paired-t approximation with normal quantiles, from the observed standard
    deviation of the per-example differences (for 0/1 outcomes, sd^2 = p_disc - d^2,
    with p_disc the share of discordant pairs: the McNemar setting). nan when n < 2 or
    the differences have no spread (sd 0: the two never disagreed, no variance to scale).
    """
    if n < 2 or not math.isfinite(sd_diff) or sd_diff <= 0:
        return math.nan
    return (_z(1 - alpha / 2) + _z(power)) * sd_diff / math.sqrt(n)


def n_to_detect(gap: float, sd_diff: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Examples a paired test needs to detect a true difference of `gap` with `power`:
    ((z_{1-alpha/2} + z_{power}) * sd_diff / gap)^2, rounded up; inf when gap is 0,
    nan when the spread is unknown."""
    if not math.isfinite(sd_diff) or sd_diff <= 0 or not math.isfinite(gap):
        return math.nan
    if gap == 0:
        return math.inf
    return float(math.ceil(((_z(1 - alpha / 2) + _z(power)) * sd_diff / abs(gap)) ** 2))

"""Cost model: hardware and API price tables, cost per 1k queries, break-even volumes.

Rules:
- Prices are defaults to override, not facts: each entry names its source and the date
  the table records it under. They are typical public on-demand list prices, written down
  without live access to the pages; pass `overrides` (or edit the table and bump
  `PRICE_TABLE_VERSION`) to use your own. Reports should print the version beside costs.
- Serving cost comes from measured throughput on the hardware the bench ran on: a rented
  machine costs its hourly price whether it is busy or not, so cost per query is
  price / throughput. Preparation (a LoRA run, an index build) is a fixed cost.
- Pure functions; no torch. NaN in gives NaN out ("unknown"), never a made-up zero.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

PRICE_TABLE_VERSION = "2026-11.1"


@dataclass(frozen=True)
class HardwarePrice:
    usd_per_hour: float
    description: str
    source: str
    as_of: str
    cores: int = 0  # vCPUs, for CPU entries only: picks the entry nearest the machine's size
    default: bool = True  # True: a list price to be overridden, not a negotiated rate


@dataclass(frozen=True)
class ApiPrice:
    input_per_m: float  # USD per 1M prompt tokens
    output_per_m: float  # USD per 1M completion tokens
    source: str
    as_of: str
    illustrative: bool = True


HARDWARE_PRICES: dict[str, HardwarePrice] = {
    "h100": HardwarePrice(2.99, "1x NVIDIA H100 SXM 80GB, on-demand",
                          "Lambda GPU Cloud on-demand pricing page (1x H100 SXM)", "2026-11"),
    "h200": HardwarePrice(3.79, "1x NVIDIA H200 SXM 141GB, on-demand (per GPU of an 8x node)",
                          "Lambda GPU Cloud on-demand pricing page (8x H200, per GPU-hour)", "2026-11"),
    "a100-80gb": HardwarePrice(1.79, "1x NVIDIA A100 SXM 80GB, on-demand",
                               "Lambda GPU Cloud on-demand pricing page (A100 SXM 80GB)", "2026-11"),
    "a100-40gb": HardwarePrice(1.29, "1x NVIDIA A100 40GB, on-demand",
                               "Lambda GPU Cloud on-demand pricing page (1x A100 40GB)", "2026-11"),
    "a10g": HardwarePrice(1.006, "AWS g5.xlarge (1x A10G 24GB, 4 vCPU), us-east-1 on-demand",
                          "AWS EC2 On-Demand Pricing page (g5.xlarge)", "2026-11"),
    "l4": HardwarePrice(0.7068, "Google Cloud g2-standard-4 (1x L4 24GB, 4 vCPU), us-central1",
                        "Google Cloud Compute Engine GPU pricing page (g2-standard-4)", "2026-11"),
    "t4": HardwarePrice(0.526, "AWS g4dn.xlarge (1x T4 16GB, 4 vCPU), us-east-1 on-demand",
                        "AWS EC2 On-Demand Pricing page (g4dn.xlarge)", "2026-11"),
    "cpu-2core": HardwarePrice(0.08925, "AWS c7i.large (2 vCPU, 4 GiB), us-east-1 on-demand",
                               "AWS EC2 On-Demand Pricing page (c7i.large)", "2026-11", cores=2),
    "cpu-8core": HardwarePrice(0.357, "AWS c7i.2xlarge (8 vCPU, 16 GiB), us-east-1 on-demand",
                               "AWS EC2 On-Demand Pricing page (c7i.2xlarge)", "2026-11", cores=8),
    "cpu-16core": HardwarePrice(0.714, "AWS c7i.4xlarge (16 vCPU, 32 GiB), us-east-1 on-demand",
                                "AWS EC2 On-Demand Pricing page (c7i.4xlarge)", "2026-11", cores=16),
}

# Hosted models, for "what would an API cost instead" columns. Illustrative list prices.
API_PRICES: dict[str, ApiPrice] = {
    "gpt-4o-mini": ApiPrice(0.15, 0.60, "OpenAI API pricing page (gpt-4o-mini)", "2026-11"),
    "gpt-4o": ApiPrice(2.50, 10.00, "OpenAI API pricing page (gpt-4o)", "2026-11"),
    "claude-3-5-haiku": ApiPrice(0.80, 4.00, "Anthropic API pricing page (Claude 3.5 Haiku)", "2026-11"),
}

# Most specific first; word boundaries keep "L4" from matching "L40S" and "A100" from "A10G".
_GPU_PATTERNS: Sequence[tuple[str, str]] = (
    (r"\bH200\b", "h200"), (r"\bH100\b", "h100"), (r"\bA100\b.*\b80\s?GB\b", "a100-80gb"),
    (r"\bA100\b", "a100-40gb"), (r"\bA10G\b", "a10g"), (r"\bL4\b", "l4"), (r"\bT4\b", "t4"))


def _lookup(table: Mapping, key: str, what: str):
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, list(table), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(table)}"
    raise KeyError(f"unknown {what} {key!r}{hint}")


def price_per_hour(hardware_key: str | None, overrides: Mapping[str, float] | None = None) -> float:
    """USD per hour for `hardware_key`; `overrides` (key -> USD/h) win over the table.

    None (hardware not recognised) gives nan: an unknown cost, not a free one.
    An unknown key raises KeyError with close matches.
    """
    if hardware_key is None:
        return math.nan
    if overrides and hardware_key in overrides:
        return float(overrides[hardware_key])
    return _lookup(HARDWARE_PRICES, hardware_key, "hardware").usd_per_hour


def detect_hardware_key(device_name: str | None, cpu_count: int | None = None) -> str | None:
    """Map a torch device name (`torch.cuda.get_device_name()`) to a price-table key.

    No name, "" or "cpu" means a CPU run: the smallest CPU entry with at least
    `cpu_count` cores (the largest if none is big enough; 2 cores when unknown).
    A GPU name the table does not know gives None rather than a CPU price, which would
    understate the cost by an order of magnitude.
    """
    name = (device_name or "").strip()
    if name and name.lower() != "cpu":
        for pattern, key in _GPU_PATTERNS:
            if re.search(pattern, name, flags=re.IGNORECASE):
                return key
        return None
    cpus = sorted((p.cores, k) for k, p in HARDWARE_PRICES.items() if p.cores)
    need = cpu_count or 2
    return next((k for cores, k in cpus if cores >= need), cpus[-1][1])


def _non_negative(value: float, name: str) -> float:
    value = float(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def prepare_cost(prepare_s: float, price_per_hour: float) -> float:
    """USD for a one-off preparation (training, index build) that took `prepare_s` seconds."""
    return _non_negative(prepare_s, "prepare_s") / 3600.0 * _non_negative(price_per_hour, "price_per_hour")


def throughput(n_queries: int, seconds: float) -> float:
    """Queries per second; nan when no time was measured."""
    seconds = _non_negative(seconds, "seconds")
    return _non_negative(n_queries, "n_queries") / seconds if seconds > 0 else math.nan


def cost_per_1k_queries(queries_per_s: float, price_per_hour: float) -> float:
    """USD per 1000 queries served at `queries_per_s` on hardware at `price_per_hour`.

    Contract: nan in either gives nan; zero throughput gives inf (the machine is paid
    for and serves nothing) unless the price is zero, which gives 0.0 (free is free).
    Negative inputs raise ValueError.
    """
    qps = _non_negative(queries_per_s, "queries_per_s")
    price = _non_negative(price_per_hour, "price_per_hour")
    if math.isnan(qps) or math.isnan(price):
        return math.nan
    if price == 0.0:
        return 0.0
    return math.inf if qps == 0.0 else 1000.0 * price / 3600.0 / qps


def per_query_cost_samples(latencies_s: Iterable[float], price_per_hour: float,
                           n_resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Bootstrap samples of USD per query for sequential serving (1 / throughput = mean
    latency), to feed `break_even_interval`."""
    from bench.stats import bootstrap_means

    return bootstrap_means(latencies_s, n_resamples, seed) * _non_negative(price_per_hour, "price") / 3600.0


def api_cost_per_1k(prompt_tokens_mean: float, completion_tokens_mean: float,
                    price: ApiPrice | str) -> float:
    """USD per 1000 queries on a hosted model, from mean token counts per query."""
    p = _lookup(API_PRICES, price, "API model") if isinstance(price, str) else price
    per_query = (_non_negative(prompt_tokens_mean, "prompt_tokens_mean") * p.input_per_m
                 + _non_negative(completion_tokens_mean, "completion_tokens_mean") * p.output_per_m) / 1e6
    return 1000.0 * per_query


def _break_even_array(fixed_a, per_query_a, fixed_b, per_query_b) -> np.ndarray:
    """Vectorised break-even volume; inf where it never breaks even."""
    fa, qa, fb, qb = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in
                                           (fixed_a, per_query_a, fixed_b, per_query_b)))
    # Orient so "h" is the side with the higher fixed cost and "l" the other.
    swap = fb > fa
    fh, qh = np.where(swap, fb, fa), np.where(swap, qb, qa)
    fl, ql = np.where(swap, fa, fb), np.where(swap, qa, qb)
    with np.errstate(divide="ignore", invalid="ignore"):
        volume = (fh - fl) / (ql - qh)
    out = np.where(qh < ql, volume, np.inf)
    out = np.where(fh == fl, 0.0, out)  # equal fixed costs: the cheaper per query never costs more
    nan = np.isnan(fa) | np.isnan(qa) | np.isnan(fb) | np.isnan(qb)
    return np.where(nan, np.nan, out)


def break_even(fixed_a: float, per_query_a: float, fixed_b: float, per_query_b: float) -> float | None:
    """Query volume from which the strategy with the higher fixed cost is cheaper overall.

    None when it never is (its per-query cost is not lower); 0.0 when the fixed costs
    are equal (nothing to earn back); nan when any input is nan. Not rounded up.
    """
    value = float(_break_even_array(fixed_a, per_query_a, fixed_b, per_query_b))
    return None if math.isinf(value) else value


def break_even_interval(fixed_a: float, per_query_a: Iterable[float] | float, fixed_b: float,
                        per_query_b: Iterable[float] | float,
                        confidence: float = 0.95) -> tuple[float, float, float]:
    """(point, low, high) break-even volume from per-query cost samples.

    Samples are paired by position (or one side may be a scalar, e.g. an API price).
    The point uses the sample means. Here "never" is inf, not None, so it can sit in an
    interval: high = inf means that, at this confidence, it may never break even.
    Quantiles use the "inverted_cdf" rule so an inf sample is never interpolated.
    """
    qa = np.atleast_1d(np.asarray(per_query_a, dtype=float))
    qb = np.atleast_1d(np.asarray(per_query_b, dtype=float))
    point = float(_break_even_array(fixed_a, qa.mean(), fixed_b, qb.mean()))
    samples = _break_even_array(fixed_a, qa, fixed_b, qb)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return point, math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail], method="inverted_cdf")
    return point, float(low), float(high)


def total_cost(fixed: float, per_query: float, volumes: Sequence[float]) -> list[float]:
    """Total USD at each query volume (e.g. per month): the fixed cost once plus volume x per query."""
    return [float(fixed) + float(per_query) * float(v) for v in volumes]


def serving_basis(model: Mapping | None) -> str:
    """How a model's queries are priced, from its manifest entry (`bench.backends`):
    "api" for a hosted API (measured tokens x the API price table), "hardware" for
    weights in this process or a server on this machine (hourly price / measured
    throughput), "remote" for a self-hosted server elsewhere (priced only when the
    run pins `cost.hardware`, since its hardware is not known here)."""
    model = model or {}
    spec = model.get("spec") if isinstance(model.get("spec"), Mapping) else {}
    if spec.get("price") or spec.get("hosted") or model.get("hosted"):
        return "api"
    url = str(spec.get("base_url") or model.get("base_url") or "")
    if model.get("backend") in (None, "hf") or not url:
        return "hardware"
    host = re.sub(r"^https?://", "", url).split("/")[0].rsplit(":", 1)[0].strip("[]")
    return "hardware" if host in ("127.0.0.1", "localhost", "::1") else "remote"


def hosted_cost_per_1k(prompt_tokens_mean: float, completion_tokens_mean: float,
                       price_key: str | None) -> tuple[float, str]:
    """(USD per 1k queries, what it is based on) for a hosted API at the measured tokens per
    query; nan with the reason when no price entry is named."""
    if not price_key:
        return math.nan, "hosted API without a price entry (set price: <API_PRICES key> on the model)"
    p = _lookup(API_PRICES, price_key, "API model")
    if any(isinstance(v, float) and math.isnan(v) for v in (prompt_tokens_mean, completion_tokens_mean)):
        return math.nan, f"API {price_key}: no measured tokens"
    return (api_cost_per_1k(prompt_tokens_mean, completion_tokens_mean, p),
            f"API {price_key} ${p.input_per_m}/${p.output_per_m} per 1M in/out tokens ({p.source}, {p.as_of}) "
            "x measured tokens per query")

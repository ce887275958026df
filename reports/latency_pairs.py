"""Latency compared like accuracy: intervals on p50/p95, paired tests, ties, flags.

The evidence is each cell's stored batch-1 probe (`cells.jsonl` -> latency.default:
`samples_ms`, `query_ids`, `interleaved`, `load`). Seeds pool. Two strategies of one
task and model probed on the same queries are compared query by query
(`bench.stats.latency_ratio`, paired: the bootstrap of the median per-query log ratio);
otherwise their p50s are bootstrapped independently. "Faster" is said only when the
95% interval of the ratio excludes 1; anything else is a latency tie.

A cell is flagged when its latency is implausible against its own kind: a cell serving
an unmerged adapter (it has a "merged" variant, so its default path runs the extra LoRA
matmuls) that is faster than a plain prompting cell of the same model that sends no
longer prompts and generates no more tokens, beyond the noise. That cannot be the
strategy; it is the machine (load, a cold cache, another process) or the design.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.stats import latency_ratio, quantile_ci
from reports.frame import KEYS, NOT_OK, RunFrames
from reports.intervals import BOOTSTRAP_SEED, CONFIDENCE, N_RESAMPLES

LATENCY_INTERVAL_COLUMNS = ["latency_p50_ci_low", "latency_p50_ci_high", "latency_p95_ci_low",
                            "latency_p95_ci_high", "latency_probe_n", "latency_interleaved", "probe_load_max"]
LATENCY_COMPARISON_COLUMNS = ["task", "model", "a", "b", "n", "p50_a_ms", "p50_b_ms", "ratio", "ci_low", "ci_high",
                              "test", "interleaved", "verdict"]
# Below this many probed queries a p50 interval is not worth printing.
MIN_SAMPLES = 5
ADAPTER_KEYS = ("adapter_sha256", "trainable_params")
RETRIEVAL_KEYS = ("index_type", "n_chunks", "index_sha256")


def _ok_cells(frames: RunFrames) -> pd.DataFrame:
    cells = frames.cells
    if cells.empty:
        return cells
    return cells[~cells["status"].astype(str).isin(NOT_OK)]


def probes(frames: RunFrames) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(task, strategy, model) -> {"samples": {(seed, query id): ms}, "interleaved": bool,
    "load": [loadavg], "merged": bool} from every finished seed's default probe."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    cells = _ok_cells(frames)
    if cells.empty or "latency" not in cells:
        return out
    for c in cells.itertuples():
        probe = c.latency if isinstance(c.latency, dict) else {}
        default = probe.get("default") if isinstance(probe.get("default"), dict) else None
        if not default:
            continue
        ms = [v for v in default.get("samples_ms") or [] if isinstance(v, (int, float))]
        if not ms:
            continue
        ids = default.get("query_ids") or list(range(len(ms)))
        entry = out.setdefault((c.task, c.strategy, c.model), {"samples": {}, "interleaved": True, "load": [],
                                                              "merged": False})
        for qid, v in zip(ids, ms):
            entry["samples"][(c.seed, str(qid))] = float(v)
        entry["interleaved"] &= bool(default.get("interleaved"))
        load = default.get("load") if isinstance(default.get("load"), dict) else {}
        entry["load"] += [v for v in (load.get("loadavg_1m_start"), load.get("loadavg_1m_end"))
                          if isinstance(v, (int, float))]
        entry["merged"] |= isinstance(probe.get("merged"), dict)
    return out


def latency_intervals(frames: RunFrames) -> pd.DataFrame:
    """Per (task, strategy, model): bootstrap intervals on the batch-1 p50 and p95."""
    rows = []
    for (task, strategy, model), p in probes(frames).items():
        ms = np.asarray(list(p["samples"].values()), dtype=float)
        row: dict[str, Any] = {"task": task, "strategy": strategy, "model": model, "latency_probe_n": int(ms.size),
                               "latency_interleaved": p["interleaved"],
                               "probe_load_max": max(p["load"]) if p["load"] else math.nan}
        for q in (50, 95):
            if ms.size >= MIN_SAMPLES:
                _, low, high = quantile_ci(ms, q, N_RESAMPLES, CONFIDENCE, BOOTSTRAP_SEED)
            else:
                low = high = math.nan
            row[f"latency_p{q}_ci_low"], row[f"latency_p{q}_ci_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows, columns=KEYS + LATENCY_INTERVAL_COLUMNS)


def compare_latency(x: dict[str, Any], y: dict[str, Any]) -> dict[str, Any] | None:
    """Ratio of x's to y's batch-1 latency, paired on shared (seed, query) when possible."""
    common = [k for k in x["samples"] if k in y["samples"]]
    paired = len(common) >= MIN_SAMPLES
    if paired:
        a = [x["samples"][k] for k in common]
        b = [y["samples"][k] for k in common]
    else:
        a, b = list(x["samples"].values()), list(y["samples"].values())
    if min(len(a), len(b)) < MIN_SAMPLES:
        return None
    res = latency_ratio(a, b, paired=paired, n_resamples=N_RESAMPLES, confidence=CONFIDENCE, seed=BOOTSTRAP_SEED)
    res["p50_a_ms"], res["p50_b_ms"] = float(np.median(a)), float(np.median(b))
    res["interleaved"] = paired and x["interleaved"] and y["interleaved"]
    return res


def latency_comparisons(frames: RunFrames) -> pd.DataFrame:
    """Every pair of probed strategies per (task, model); `a` is the slower at p50, so
    `ratio` >= 1 reads "a is ratio x slower"; verdict "<b> faster" or "tie"."""
    found = probes(frames)
    out = []
    groups: dict[tuple[str, str], list[str]] = {}
    for task, strategy, model in found:
        groups.setdefault((task, model), []).append(strategy)
    for (task, model), names in groups.items():
        for s, t in itertools.combinations(names, 2):
            res = compare_latency(found[(task, s, model)], found[(task, t, model)])
            if res is None:
                continue
            a, b = s, t
            if res["ratio"] < 1:  # orient: a is the slower
                a, b = t, s
                res = {**res, "ratio": 1 / res["ratio"], "ci": (1 / res["ci"][1], 1 / res["ci"][0]),
                       "p50_a_ms": res["p50_b_ms"], "p50_b_ms": res["p50_a_ms"],
                       "verdict": {"a slower": "b slower", "b slower": "a slower"}.get(res["verdict"], "tie")}
            verdict = f"{b} faster" if res["verdict"] == "a slower" else "tie"
            out.append({"task": task, "model": model, "a": a, "b": b, "n": res["n"], "p50_a_ms": res["p50_a_ms"],
                        "p50_b_ms": res["p50_b_ms"], "ratio": res["ratio"], "ci_low": res["ci"][0],
                        "ci_high": res["ci"][1], "test": res["test"], "interleaved": res["interleaved"],
                        "verdict": verdict})
    return pd.DataFrame(out, columns=LATENCY_COMPARISON_COLUMNS)


def find_latency(comparisons: pd.DataFrame, task: str, model: str, x: str, y: str) -> dict[str, Any] | None:
    if comparisons is None or comparisons.empty:
        return None
    hit = comparisons[(comparisons["task"] == task) & (comparisons["model"] == model)
                      & (((comparisons["a"] == x) & (comparisons["b"] == y))
                         | ((comparisons["a"] == y) & (comparisons["b"] == x)))]
    return hit.iloc[0].to_dict() if len(hit) else None


def _kind(info: Any) -> str:
    info = info if isinstance(info, dict) else {}
    if any(k in info for k in ADAPTER_KEYS):
        return "adapter"
    if any(k in info for k in RETRIEVAL_KEYS):
        return "retrieval"
    return "prompt"


def implausible(frames: RunFrames, summary: pd.DataFrame, comparisons: pd.DataFrame) -> dict[tuple, str]:
    """(task, strategy, model) -> why its latency cannot be right (see the module doc)."""
    found = probes(frames)
    cells = _ok_cells(frames)
    kinds = {(c.task, c.strategy, c.model): _kind(c.info) for c in cells.itertuples()} if not cells.empty else {}
    rows = {(r["task"], r["strategy"], r["model"]): r for r in summary.to_dict(orient="records")}
    out: dict[tuple, str] = {}
    for key, p in found.items():
        if kinds.get(key) != "adapter" or not p["merged"]:
            continue
        task, strategy, model = key
        for other, kind in kinds.items():
            if kind != "prompt" or other[0] != task or other[2] != model or other not in rows or key not in rows:
                continue
            mine, base = rows[key], rows[other]
            if not (_ge(mine.get("prompt_tokens_mean"), base.get("prompt_tokens_mean"), 0.95)
                    and _ge(mine.get("completion_tokens_mean"), base.get("completion_tokens_mean"), 0.95)):
                continue  # shorter prompts or answers: being faster is possible
            pair = find_latency(comparisons, task, model, strategy, other[1])
            if pair is not None and pair["verdict"] == f"{strategy} faster":
                load = f"; load average up to {max(p['load']):.1f}" if p["load"] else ""
                out[key] = (f"implausible: {strategy} serves an unmerged adapter (strictly more work) yet ran "
                            f"{pair['ratio']:.1f}x faster than {other[1]} on prompts no shorter "
                            f"(p50 {pair['p50_b_ms']:.0f} vs {pair['p50_a_ms']:.0f} ms"
                            f"{'' if pair['interleaved'] else ', probed at different moments'}{load}); "
                            "suspect the machine, not the strategy")
    return out


def _ge(x: Any, y: Any, factor: float) -> bool:
    try:
        return float(x) >= float(y) * factor
    except (TypeError, ValueError):
        return False


def fmt_latency_pair(c: dict[str, Any]) -> str:
    """"rag vs lora: 2.1x slower [1.8, 2.5] (paired, interleaved) -> lora faster (n=32)"."""
    how = c["test"] + (", interleaved" if c.get("interleaved") else "")
    return (f"{c['a']} vs {c['b']}: p50 {c['p50_a_ms']:.0f} vs {c['p50_b_ms']:.0f} ms, {c['ratio']:.2f}x "
            f"[{c['ci_low']:.2f}, {c['ci_high']:.2f}] ({how}) -> {c['verdict']} (n={c['n']})")

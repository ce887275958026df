"""`bench plan RUN`: how many test examples would settle each task's verdict, and how
long a run that size would take on the hardware that ran RUN.

Per task and model, the leader (highest score) is compared with every strategy that
ties with it (`reports.compare_pairs`: paired tests on the same examples). A tie's
`n_needed` is the examples that would detect its observed gap with 80% power at
alpha 0.05; the decisive n of the task is the largest of them (every tie with the
leader must be settled). Time is the measured cost of that n: each strategy's seconds
per query at its measured throughput (queries_per_s of the batched predict pass),
summed, plus each strategy's prepare time once (an index build, a LoRA run: the part
that does not grow with the test set) and the batch-1 latency probes as they ran.
Where the task holds fewer test examples than needed, the plan says so: more data,
not more compute, is then the way to a verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reports.compare_pairs import compare_strategies
from reports.frame import RunFrames, load_run
from reports.summary import summarize
from reports.trivial import task_entry


@dataclass
class TaskPlan:
    task: str
    model: str
    n_now: int
    leader: str | None
    ties: list[dict[str, Any]] = field(default_factory=list)  # {b, diff, n_needed}
    n_decisive: float = math.nan  # nan: already decisive; inf: some tie has no gap at all
    test_available: int | None = None
    seconds_per_example: float = math.nan  # every strategy, at measured throughput
    fixed_seconds: float = 0.0  # prepare once
    estimate_s: float = math.nan

    @property
    def decided(self) -> bool:
        return not self.ties


def plan(frames: RunFrames) -> list[TaskPlan]:
    summary = summarize(frames)
    comparisons = compare_strategies(frames)
    out = []
    for (task, model), rows in summary.groupby(["task", "model"], sort=False):
        ok = rows[rows["status"] == "ok"].dropna(subset=["score"])
        if ok.empty:
            continue
        lead = ok.sort_values("score", ascending=False, kind="stable").iloc[0]
        sizes = task_entry(frames, task).get("sizes") or {}
        p = TaskPlan(task=str(task), model=str(model), n_now=int(ok["n"].max()), leader=str(lead["strategy"]),
                     test_available=sizes.get("test") if isinstance(sizes.get("test"), int) else None)
        mine = comparisons[(comparisons["task"] == task) & (comparisons["model"] == model)
                           & ((comparisons["a"] == lead["strategy"]) | (comparisons["b"] == lead["strategy"]))
                           & comparisons["a"].isin(ok["strategy"]) & comparisons["b"].isin(ok["strategy"])]
        for c in mine.to_dict(orient="records"):
            if c["verdict"] == "tie":
                other = c["b"] if c["a"] == lead["strategy"] else c["a"]
                p.ties.append({"b": other, "diff": float(c["diff"]), "n_needed": float(c["n_needed"]),
                               "mde": float(c["mde"]) if c["mde"] is not None else math.nan})
        if p.ties:
            needs = [t["n_needed"] for t in p.ties]
            p.n_decisive = math.inf if any(math.isinf(v) for v in needs) else max(
                (v for v in needs if not math.isnan(v)), default=math.nan)
        qps = pd.to_numeric(ok["queries_per_s"], errors="coerce")
        p.seconds_per_example = float((1.0 / qps).sum()) if qps.notna().all() and (qps > 0).all() else math.nan
        p.fixed_seconds = float(pd.to_numeric(ok["prepare_s"], errors="coerce").fillna(0).sum())
        if math.isfinite(p.n_decisive) and not math.isnan(p.seconds_per_example):
            p.estimate_s = p.n_decisive * p.seconds_per_example + p.fixed_seconds
        out.append(p)
    return out


def fmt_duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe(p: TaskPlan) -> list[str]:
    head = f"{p.task} ({p.model}): n={p.n_now} now, leader {p.leader}"
    if p.decided:
        return [f"{head}: already decisive (the leader is ahead of every other strategy at this n)"]
    lines = [head + ":"]
    for t in p.ties:
        need = ("never: equal means, no gap to detect" if math.isinf(t["n_needed"])
                else "unknown" if math.isnan(t["n_needed"]) else f"n≈{int(t['n_needed']):,}")
        mde = "" if math.isnan(t["mde"]) else f"; n={p.n_now} detects {t['mde']:.2f}"
        lines.append(f"  tie with {t['b']}: observed gap {t['diff']:+.3f}{mde}; to detect it (80% power): {need}")
    if math.isinf(p.n_decisive) or math.isnan(p.n_decisive):
        lines.append("  a decisive run: no finite n settles every tie (a tie with no gap stays a tie)")
        return lines
    n = int(p.n_decisive)
    lines.append(f"  a decisive run needs n≈{n:,} test examples: about {fmt_duration(p.estimate_s)} on this "
                 f"hardware ({p.seconds_per_example:.3g} s per example over all strategies at the measured "
                 f"throughput + {fmt_duration(p.fixed_seconds)} prepare)")
    if p.test_available is not None and n > p.test_available:
        lines.append(f"  the task holds only {p.test_available:,} test examples: add data (or accept the tie)")
    return lines


def plan_text(run_dir: Any) -> str:
    frames = load_run(run_dir)
    hw = frames.manifest.get("hardware") if isinstance(frames.manifest.get("hardware"), dict) else {}
    where = ", ".join(str(v) for v in (hw.get("cpu"), hw.get("gpu")) if v) or "the run's machine"
    plans = plan(frames)
    lines = [f"bench plan {frames.name} (times at the throughput measured on {where}; 80% power, alpha 0.05)"]
    for p in plans:
        lines += describe(p)
    if not plans:
        lines.append("no finished cells to plan from")
    return "\n".join(lines)

"""Constraints to a recommendation on planted runs: exactly one strategy meets them; none
does (and the binding constraint is named); one is met only at the point estimate
("uncertain"); the cheapest passing one ships, a cost tie going to the higher score."""
from __future__ import annotations

import pytest

from decide_runs import CONSTRAINTS, PLAN, build
from reports import load_run, summarize
from reports.decide import decide_run
from reports.decide_config import parse


def _decide(tmp_path, constraints, plan=None):
    frames = load_run(build(tmp_path / "run", plan, decide=constraints).root)
    summary = summarize(frames)
    decisions = decide_run(frames, summary)
    return summary.set_index("strategy"), decisions.get("t")


def test_exactly_one_strategy_meets_every_constraint(tmp_path):
    summary, d = _decide(tmp_path, CONSTRAINTS)
    assert d.outcome == "ship" and d.pick == "lora" and d.binding is None
    states = {c.label: c.state for c in d.candidates}
    assert states == {"prompting": "fail", "rag": "fail", "lora": "pass"}
    assert d.text.startswith("ship lora: the only strategy that meets every constraint (score 0.90 [")
    lora = summary.loc["lora"]
    # The margin on each constraint, at the point estimate and at the interval's far end.
    score = next(k for k in d.candidates[2].checks if k.key == "min_score")
    assert score.margin == pytest.approx(0.9 - 0.7) and score.worst == pytest.approx(lora["score_ci_low"] - 0.7)
    assert f"score 0.90 [{lora['score_ci_low']:.2f}, {lora['score_ci_high']:.2f}] vs min 0.70: margin +0.20" in d.text
    p95 = next(k for k in d.candidates[2].checks if k.key == "max_p95_ms")
    assert p95.worst == pytest.approx(300 - lora["latency_p95_ci_high"]) and p95.worst > 0
    cost = next(k for k in d.candidates[2].checks if k.key == "max_monthly_usd")
    # $0.10 per 1,000 queries x 1,000 thousand + $3.60 of training over 12 months
    assert cost.value == pytest.approx(100.0 + 3.6 / 12) and cost.state == "pass"
    assert "monthly cost $100" in d.text and "vs max $150" in d.text
    assert "failing: prompting (score 0.50" in d.text and "rag (p95 " in d.text


def test_none_meets_them_and_the_binding_constraint_is_named(tmp_path):
    summary, d = _decide(tmp_path, {**CONSTRAINTS, "min_score": 0.95})
    assert d.outcome == "none" and d.pick is None and d.binding == "min_score"
    # lora and prompting each miss only the score; lora needs the smaller relaxation, to
    # its interval's low end, where it would pass rather than be uncertain.
    low = summary.loc["lora", "score_ci_low"]
    assert f"no strategy meets the constraints; min_score binds: relaxing it to {low:.2f} would admit lora" in d.text
    # prompting is one relaxation away too, but to 0.40 against min 0.95: out of reach, not offered.
    assert "relaxing min_score to" not in d.text and "would admit prompting" not in d.text
    assert "failing: prompting" in d.text and "rag (score 0.90" in d.text


def test_a_relaxation_out_of_reach_is_not_offered_the_best_value_is_named(tmp_path):
    # A SQuAD-like task: every strategy scores near zero against min_score 0.3. Relaxing the
    # limit to the best one's interval low end (about 0.02) would admit it: no team's option.
    plan = {"prompting": (2, 100.0, 5.0, 0.0), "rag": (5, 150.0, 8.0, 360.0), "lora": (3, 150.0, 10.0, 3600.0)}
    summary, d = _decide(tmp_path, {"min_score": 0.3}, plan)
    rag = summary.loc["rag"]
    assert d.outcome == "none" and d.binding == "min_score"
    assert "relaxing it to" not in d.text and "would admit rag" not in d.text
    assert (f"min_score binds, and no strategy comes near min_score 0.30: the best, rag, scores "
            f"0.05 [{rag['score_ci_low']:.2f}, {rag['score_ci_high']:.2f}]; relaxing it alone would admit a "
            "strategy only below 0.15, half the limit") in d.text
    # The rule's edge: rag's interval low end just above half the limit is offered, just below is not.
    plan = {"prompting": (20, 100.0, 5.0, 0.0), "rag": (40, 150.0, 8.0, 360.0), "lora": (30, 150.0, 10.0, 3600.0)}
    summary, _ = _decide(tmp_path / "edge", {"min_score": 0.9}, plan)
    low = summary.loc["rag", "score_ci_low"]
    _, d = _decide(tmp_path / "near", {"min_score": round(low * 1.9, 3)}, plan)
    assert f"min_score binds: relaxing it to {low:.2f} would admit rag" in d.text
    _, d = _decide(tmp_path / "far", {"min_score": round(low * 2.1, 3)}, plan)
    assert "relaxing it to" not in d.text and "no strategy comes near min_score" in d.text


def test_a_latency_limit_out_of_reach_names_the_fastest(tmp_path):
    summary, d = _decide(tmp_path, {"max_p95_ms": 40})  # the fastest, prompting, is near 100 ms
    fastest = summary.loc["prompting"]
    assert d.binding == "max_p95_ms" and "relaxing it to" not in d.text
    assert ("max_p95_ms binds, and no strategy comes near max_p95_ms 40 ms: the fastest, prompting, has a p95 of "
            f"{fastest['latency_p95_ms']:,.0f} ms [") in d.text
    assert "relaxing it alone would admit a strategy only above 80 ms, twice the limit" in d.text


def test_when_every_strategy_misses_two_the_one_excluding_most_binds(tmp_path):
    _, d = _decide(tmp_path, {"min_score": 0.95, "max_p95_ms": 50})
    assert d.outcome == "none" and d.binding == "min_score"  # both exclude all three: the first in order
    assert "min_score binds: it excludes 3 of 3, and every strategy misses at least two constraints" in d.text
    _, d = _decide(tmp_path / "b", {"min_score": 0.95, "max_p95_ms": 120})
    assert d.binding == "min_score"  # excludes 3; p95 excludes rag and lora, prompting misses only the score
    # prompting would need min_score 0.40 against 0.95: out of reach, so it is not offered; rag and
    # lora come near the score but miss the p95 too.
    assert "relaxing it to" not in d.text and "would admit prompting" not in d.text
    assert ("min_score binds, and no strategy that misses only it comes near min_score 0.95: the only one, "
            "prompting, scores 0.50 [0.40, 0.60]; relaxing it alone would admit a strategy only below 0.47") in d.text


def test_a_constraint_met_only_at_the_point_estimate_is_uncertain(tmp_path):
    frames = load_run(build(tmp_path / "run", decide=CONSTRAINTS).root)
    summary = summarize(frames)
    lora = summary.set_index("strategy").loc["lora"]
    limit = round((lora["score"] + lora["score_ci_low"]) / 2, 3)  # below the point, above the interval's low end
    assert lora["score_ci_low"] < limit < lora["score"]
    d = decide_run(frames, summary, {"min_score": limit}).get("t")
    assert d.outcome == "uncertain" and d.pick == "lora"
    assert {c.label: c.state for c in d.candidates}["lora"] == "uncertain"
    assert d.text.startswith("uncertain: no strategy surely meets the constraints; likeliest lora")
    assert f"vs min {limit:.2f}: meets it only at the point estimate" in d.text
    assert "more test examples (`limit`) narrow the score interval (about " in d.text
    # The same strategy passes with the limit below its interval.
    assert decide_run(frames, summary, {"min_score": round(lora["score_ci_low"] - 0.01, 2)}).get("t").pick == "lora"


def test_a_p95_whose_interval_crosses_the_limit_is_uncertain(tmp_path):
    frames = load_run(build(tmp_path / "run", decide=CONSTRAINTS).root)
    summary = summarize(frames)
    lora = summary.set_index("strategy").loc["lora"]
    assert lora["latency_p95_ms"] < lora["latency_p95_ci_high"]
    limit = (lora["latency_p95_ms"] + lora["latency_p95_ci_high"]) / 2
    d = decide_run(frames, summary, {"max_p95_ms": limit}).get("t")
    assert d.outcome == "uncertain" and d.pick == "lora"
    assert "p95 interval" in d.text and "meets it only at the point estimate" in d.text


def test_among_several_passing_the_cheapest_ships_and_a_cost_tie_goes_to_the_higher_score(tmp_path):
    loose = {"min_score": 0.6, "max_p95_ms": 1000, "monthly_queries": 1_000_000}
    plan = {"a": (80, 150.0, 10.0, 0.0), "b": (90, 150.0, 14.0, 0.0)}
    _, d = _decide(tmp_path, loose, plan)
    assert d.pick == "a" and "the cheapest of the 2 that meet every constraint" in d.text
    assert "also meeting them: b ($140" in d.text
    plan = {"a": (80, 150.0, 10.0, 0.0), "b": (90, 150.0, 10.1, 0.0)}  # 1% apart: the cost intervals overlap
    _, d = _decide(tmp_path / "tie", loose, plan)
    assert d.pick == "b" and "tied on cost with a (the cost intervals overlap), and the higher score" in d.text


def test_per_task_values_apply_and_a_flag_replaces_them_for_every_task(tmp_path):
    frames = load_run(build(tmp_path / "run", decide={**CONSTRAINTS, "tasks": {"t": {"min_score": 0.95}}}).root)
    summary = summarize(frames)
    assert decide_run(frames, summary).get("t").binding == "min_score"
    flagged = decide_run(frames, summary, {"min_score": 0.7})
    assert flagged.get("t").pick == "lora" and flagged.config.source == "the run's config and the command line"
    assert "min score 0.70" in flagged.constraints and "t: 0.95" not in flagged.constraints
    assert parse({"min_score": 0.5, "tasks": {"t": {"max_p95_ms": 9}}}).for_task("t").min_score == 0.5
    assert parse({"min_score": 0.5, "tasks": {"t": {"max_p95_ms": 9}}}).for_task("other").max_p95_ms is None


def test_without_a_decide_block_there_is_no_decision(tmp_path):
    frames = load_run(build(tmp_path / "run").root)
    assert decide_run(frames, summarize(frames)) is None

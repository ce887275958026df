"""The decision in every output (report.html first, summary.md, summary.json, the
terminal, `bench compare`), re-deciding a finished run from `bench report` flags, the
`decide:` block's validation, and: without the block, nothing changes."""
from __future__ import annotations

import json
import re

import pytest

from bench.cli import main
from bench.config import RunConfig, make_config
from bench.errors import BenchError
from decide_runs import CONSTRAINTS, PLAN, build
from reports import render_run
from reports.compare_out import run_compare
from reports.regression import Thresholds

TITLE = "Decision under your constraints"


def test_report_opens_with_the_decision_and_summary_md_and_json_carry_it(tmp_path):
    root = build(tmp_path / "run", decide=CONSTRAINTS).root
    render_run(root)
    html = (root / "report.html").read_text()
    body = html.split("<body>", 1)[1]
    assert body.index(TITLE) < body.index("Verdict per task")  # it opens the page
    assert "ship lora: the only strategy that meets every constraint" in html
    assert 'class="state-fail"' in html and "Against the constraints" in html
    md = (root / "summary.md").read_text()
    assert md.index(TITLE) < md.index("### t (accuracy)")
    assert "- **t**: ship lora: the only strategy that meets every constraint" in md
    assert ("Constraints (from the run's config): min score 0.70; p95 at most 300 ms; 1,000,000 queries a month; "
            "at most $150 a month; prepare cost spread over 12 months.") in md
    doc = json.loads((root / "summary.json").read_text())
    decided = doc["decisions"]["tasks"][0]
    assert decided["pick"] == "lora" and decided["outcome"] == "ship"
    assert {c["strategy"]: c["state"] for c in decided["candidates"]}["rag"] == "fail"


def test_without_a_decide_block_the_outputs_do_not_change(tmp_path):
    plain, decided = build(tmp_path / "plain").root, build(tmp_path / "decided", decide=CONSTRAINTS).root
    render_run(plain)
    render_run(decided)
    md_plain, md_decided = (plain / "summary.md").read_text(), (decided / "summary.md").read_text()
    assert TITLE not in md_plain and TITLE not in (plain / "report.html").read_text()
    assert "decisions" not in json.loads((plain / "summary.json").read_text())
    # The decided summary is the plain one with the decision section added, nothing else.
    section = re.search(rf"### {TITLE}\n\n.*?\n\n(- .*\n)+\n", md_decided).group(0)
    assert md_decided.replace(section, "") == md_plain
    verdicts = [line for line in md_plain.splitlines() if line.startswith("**Verdict:**")]
    assert verdicts and all(v in md_decided for v in verdicts)


def test_bench_report_flags_re_decide_a_finished_run(tmp_path, capsys):
    root = build(tmp_path / "run", decide=CONSTRAINTS).root
    manifest = (root / "manifest.json").read_text()
    assert main(["report", str(root), "--min-score", "0.95"]) == 0
    out = capsys.readouterr().out
    assert "no strategy meets the constraints; min_score binds" in " ".join(out.split())
    assert "min\\_score binds" in (root / "summary.md").read_text()  # Markdown-escaped
    assert (root / "manifest.json").read_text() == manifest  # the run's own config is left as it was
    assert main(["report", str(root)]) == 0
    assert "ship lora" in (root / "summary.md").read_text()


def test_bench_report_flags_decide_a_run_without_a_block(tmp_path, capsys):
    root = build(tmp_path / "run").root
    assert main(["report", str(root), "--max-p95-ms", "300"]) == 0
    md = (root / "summary.md").read_text()
    assert "Constraints (from the command line): p95 at most 300 ms." in md
    assert "ship prompting: the cheapest of the 2 that meet every constraint" in md  # rag is too slow
    assert main(["report", str(root), "--min-score", "2"]) == 2
    assert "config.decide.min_score: --min-score: expected a score between 0 and 1" in capsys.readouterr().err
    assert main(["report", str(root), "--max-monthly-usd", "5"]) == 2
    assert "needs monthly_queries" in capsys.readouterr().err


def test_bench_compare_carries_the_decision_of_both_runs(tmp_path, capsys):
    base = build(tmp_path / "base", decide=CONSTRAINTS).root
    slow = {**PLAN, "lora": (90, 300.0, 10.0, 3600.0)}  # lora's p95 now misses 300 ms, by about a tenth
    new = build(tmp_path / "new", slow, decide=CONSTRAINTS).root
    run_compare(str(base), str(new), str(tmp_path / "out"), Thresholds(0.01, 1.5, 1.5))
    md = (tmp_path / "out" / "compare.md").read_text()
    assert f"### {TITLE} (both runs)" in md
    assert "- **t**: no strategy meets the constraints; max\\_p95\\_ms binds" in md
    assert "**the baseline: ship lora**" in md
    assert "the baseline: ship lora" in (tmp_path / "out" / "compare.html").read_text()
    doc = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert doc["decisions"]["tasks"][0]["changed"] is True
    assert "the baseline: ship lora" in " ".join(capsys.readouterr().out.split())


def test_compare_without_constraints_has_no_decision(tmp_path):
    base, new = build(tmp_path / "base").root, build(tmp_path / "new").root
    run_compare(str(base), str(new), str(tmp_path / "out"), Thresholds(0.01, 1.5, 1.5))
    assert TITLE not in (tmp_path / "out" / "compare.md").read_text()
    assert "decisions" not in json.loads((tmp_path / "out" / "compare.json").read_text())


@pytest.mark.parametrize("decide, where", [
    ({"min_scor": 0.5}, "config.decide.min_scor: unknown key (did you mean min_score?)"),
    ({"min_score": 1.5}, "config.decide.min_score: expected a score between 0 and 1"),
    ({"max_p95_ms": 0}, "config.decide.max_p95_ms: expected milliseconds > 0"),
    ({"monthly_queries": 2.5}, "config.decide.monthly_queries: expected a whole number of queries"),
    ({"max_monthly_usd": True, "monthly_queries": 10}, "config.decide.max_monthly_usd: expected dollars >= 0"),
    ({"max_monthly_usd": 50}, "config.decide.max_monthly_usd: needs monthly_queries"),
    ({"tasks": {"squad": {"min_score": "high"}}}, "config.decide.tasks.squad.min_score: expected a score"),
    ({"tasks": {"sqad": {"min_score": 0.3}}}, "config.decide.tasks.sqad: no task 'sqad' in this run"),
    ({"tasks": {"squad": {"tasks": {}}}}, "config.decide.tasks.squad.tasks: unknown key"),
    ({"tasks": ["squad"]}, "config.decide.tasks: expected a mapping"),
])
def test_a_bad_decide_block_names_its_key(decide, where):
    with pytest.raises(BenchError) as info:
        RunConfig(tasks=["squad"], strategies=["prompting"], decide=decide)
    assert where in str(info.value)


def test_a_bad_decide_value_in_yaml_names_the_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("tasks: [squad]\ndecide:\n  min_score: 0.5\n  tasks:\n    squad:\n      max_p95_ms: -3\n")
    with pytest.raises(BenchError, match=r"exp.yaml:6: field 'decide.tasks.squad.max_p95_ms': expected millisec"):
        make_config(str(path))
    path.write_text("tasks: [squad]\ndecide: {min_score: 0.8, monthly_queries: 2000000, max_monthly_usd: 500,"
                    " tasks: {squad: {min_score: 0.3}}}\n")
    cfg = make_config(str(path))
    assert cfg.to_dict()["decide"]["tasks"] == {"squad": {"min_score": 0.3}}  # recorded for the report

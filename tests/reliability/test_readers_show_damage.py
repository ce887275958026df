"""Readers never hide damage: a damaged or missing row makes its cell "incomplete" in
every output of `bench report` and `bench compare`, and the regression gate fails."""
import json

import pytest

import bench.cli
from bench.config import RunConfig
from bench.runner import Runner

CELL = "toy-facts|prompting|smollm2-135m|seed0"
# Fake models' timings are noise on a shared machine: the gate here is about damage only.
GATE = ["--fail-on-regression", "--max-latency-ratio", "1e6", "--max-cost-ratio", "1e6"]


@pytest.fixture
def two_runs(tmp_path, fake_world):
    dirs = []
    for name in ("base", "new"):
        cfg = RunConfig(tasks=["toy-qa", "toy-cls"], strategies=["prompting"], out=str(tmp_path), name=name,
                        limit=6, latency_sample=0, warmup=0, cache=False)
        dirs.append(Runner(cfg, log=lambda *_: None).run())
    return dirs


def _damage_one_row(run_dir, how):
    path = run_dir / "rows.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if CELL in line)
    if how == "flip":
        lines[i] = lines[i].replace('"score": 1.0', '"score": 0.0').replace('"score": 0.0', '"score": 0.5', 1)
    else:
        del lines[i]
    path.write_text("".join(lines))


@pytest.mark.parametrize("how", ["flip", "drop"])
def test_report_marks_the_damaged_cell_incomplete_everywhere(two_runs, how, capsys):
    _, new = two_runs
    _damage_one_row(new, how)
    assert bench.cli.main(["report", str(new)]) == 0
    out = capsys.readouterr().out
    assert "incomplete" in out and "1 of 2 rows missing" in " ".join(out.split())
    summary = json.loads((new / "summary.json").read_text())["summary"]
    facts = next(r for r in summary if r["task"] == "toy-facts")
    assert facts["status"] == "incomplete" and "1 of 2 rows missing" in facts["error"]
    assert facts["score"] is None  # never a complete-looking score over 5 rows
    damaged = "1 damaged line(s)" if how == "flip" else "0 damaged line(s)"
    assert damaged in facts["error"]
    other = next(r for r in summary if r["task"] == "toy-sentiment")
    assert other["status"] == "ok" and other["n"] == 6
    for name in ("summary.csv", "summary.md", "report.html"):
        assert "incomplete" in (new / name).read_text(), name


def test_compare_fails_the_gate_on_an_incomplete_cell(two_runs, capsys):
    base, new = two_runs
    assert bench.cli.main(["compare", str(base), str(new), *GATE]) == 0
    capsys.readouterr()
    _damage_one_row(new, "flip")
    assert bench.cli.main(["compare", str(base), str(new), *GATE]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "incomplete" in out and "No regression" not in out
    doc = json.loads((new / "compare.json").read_text())
    cell = next(c for c in doc["cells"] if c["task"] == "toy-facts")
    assert cell["status"] == "incomplete" and cell["regression"] is True
    for name in ("compare.md", "compare.html"):
        assert "incomplete" in (new / name).read_text(), name


def test_a_damaged_baseline_cell_fails_the_gate_too(two_runs, capsys):
    base, new = two_runs
    _damage_one_row(base, "drop")
    assert bench.cli.main(["compare", str(base), str(new), *GATE]) == 1
    capsys.readouterr()
    cell = next(c for c in json.loads((new / "compare.json").read_text())["cells"] if c["task"] == "toy-facts")
    assert cell["status"] == "baseline incomplete" and "incomplete in the baseline: 1 of 2 rows" in cell["reasons"][0]

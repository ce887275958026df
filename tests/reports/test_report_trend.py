"""The trend charts of report.html and compare.html, from the results database the
caller names; without one the section is absent."""
from __future__ import annotations

import re

import pytest

from bench import history
from history_runs import RUNS, TASK, plant_all
from reports import render_run
from reports.compare_out import run_compare
from reports.regression import Thresholds
from reports.trend import trend_section


@pytest.fixture
def recorded_runs(tmp_path, monkeypatch):
    db = tmp_path / "history.sqlite"
    monkeypatch.setenv(history.ENV, str(db))
    monkeypatch.chdir(tmp_path)
    runs = plant_all(tmp_path / "runs")
    for folder in runs.values():
        history.record_run(db, folder)
    return db, runs


def test_the_report_charts_score_and_cost_over_the_recorded_runs(recorded_runs):
    db, runs = recorded_runs
    render_run(runs["run-3"], history=db)
    page = (runs["run-3"] / "report.html").read_text(encoding="utf-8")
    assert "History: this task over 3 recorded runs" in page and "run-1 to run-3" in page
    section = page[page.index("History: this task"):]
    svgs = re.findall(r"<svg.*?</svg>", section, flags=re.S)[:2]
    assert "accuracy per recorded run" in svgs[0] and "cost per 1,000 queries per recorded run" in svgs[1]
    # One line per strategy with a point per run, and this run marked.
    assert svgs[0].count("<polyline") == 2 and svgs[0].count("<circle") == 6 and "this run" in svgs[0]


def test_without_a_database_the_report_has_no_trend(recorded_runs, tmp_path):
    _, runs = recorded_runs
    render_run(runs["run-2"], history=tmp_path / "absent.sqlite")
    assert "History:" not in (runs["run-2"] / "report.html").read_text(encoding="utf-8")
    render_run(runs["run-2"])
    assert "History:" not in (runs["run-2"] / "report.html").read_text(encoding="utf-8")


def test_compare_html_charts_the_compared_cells(recorded_runs, tmp_path):
    db, runs = recorded_runs
    _, written = run_compare(str(runs["run-1"]), str(runs["run-3"]), str(tmp_path / "cmp"), Thresholds(), history=db)
    page = written["html"].read_text(encoding="utf-8")
    assert f"History: {TASK} over 3 recorded runs" in page and "marks the new run" in page
    _, written = run_compare(str(runs["run-1"]), str(runs["run-3"]), str(tmp_path / "cmp2"), Thresholds())
    assert "History:" not in written["html"].read_text(encoding="utf-8")


def test_one_recorded_run_is_no_trend(recorded_runs):
    db, _ = recorded_runs
    rows = history.read_trend(db, strategy="rag")
    assert trend_section(rows, TASK) is not None
    assert trend_section([r for r in rows if r["run"] == "run-1"], TASK) is None
    assert len(RUNS) == 3


def test_hostile_names_are_escaped_in_the_chart(recorded_runs):
    db, _ = recorded_runs
    rows = [dict(r, strategy='<script>alert(1)</script>') for r in history.read_trend(db)]
    chart = str(trend_section(rows, TASK)["score_chart"])
    assert "<script>" not in chart and "&lt;script&gt;" in chart

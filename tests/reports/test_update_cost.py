"""The update-cost table on planted cell records: dollars per update, per month, and the monthly totals."""
import json

import pytest

from bench.store import RunStore, cell_id
from reports import render_run
from reports.frame import load_run
from reports.summary import summarize
from reports.update_cost import update_frame

MODEL = "m"
# strategy, seed -> the cell's update fact. $36/h is $0.01 a second.
UPDATES = {
    ("prompting", 0): {"method": "none", "seconds": 0.0, "estimate": False, "basis": "nothing to redo"},
    ("rag", 0): {"method": "incremental re-index", "seconds": 2.0, "estimate": False, "full_rebuild_s": 50.0,
                 "chunks_removed": 3, "chunks_added": 4, "index": "flat", "check_queries": 8, "check_agree": 8},
    ("rag", 1): {"method": "incremental re-index", "seconds": 4.0, "estimate": False, "full_rebuild_s": 70.0,
                 "chunks_removed": 3, "chunks_added": 4, "index": "flat", "check_queries": 8, "check_agree": 7},
    ("lora", 0): {"method": "retrain", "seconds": 600.0, "estimate": True, "basis": "estimate: prepare seconds"},
    ("broken", 0): {"error": "planted: the index was gone"},
}


def planted(root, refresh=4):
    store = RunStore(root)
    for (strategy, seed), update in UPDATES.items():
        cell = cell_id("kb", strategy, MODEL, seed)
        # 4 queries in 4 predict seconds: 1 query/s, so $10 per 1,000 queries at $36/h.
        store.append_rows([{"cell": cell, "task": "kb", "strategy": strategy, "model": MODEL, "seed": seed,
                            "example_id": f"e{i}", "input": "q", "target": "a", "output": "a", "score": 1.0,
                            "latency_s": 1.0, "prompt_tokens": 10, "completion_tokens": 1, "retrieved_ids": [],
                            "truncated": False} for i in range(4)])
        store.append_cell({"cell": cell, "task": "kb", "strategy": strategy, "model": MODEL, "seed": seed,
                           "status": "ok", "error": None, "metric": "f1", "n": 4, "prepare_s": 600.0,
                           "predict_s": 4.0, "device": "cpu", "info": {},
                           "update": {"source": "0.01 of the corpus rewritten (seed 0)", **update}})
    store.write_json("manifest.json", {"name": "planted", "config": {"refresh_per_month": refresh},
                                       "cost": {"usd_per_hour": 36.0, "monthly_volumes": [1000, 100000]}})
    return root


def test_monthly_totals_are_serving_plus_refreshes(tmp_path):
    frames = load_run(planted(tmp_path / "run"))
    frame = update_frame(frames, summarize(frames))
    by = {r["strategy"]: r for r in frame.to_dict(orient="records")}
    assert by["prompting"]["updates_usd_per_month"] == 0
    assert by["prompting"]["monthly_totals_usd"] == pytest.approx([10.0, 1000.0])
    assert by["rag"]["seconds"] == pytest.approx(3.0)  # seeds averaged
    assert by["rag"]["usd_per_update"] == pytest.approx(0.03)
    assert by["rag"]["monthly_totals_usd"] == pytest.approx([10.12, 1000.12])
    assert by["rag"]["speedup"] == pytest.approx(60.0 / 3.0)
    assert by["rag"]["check"].startswith("15/16 queries")
    assert by["lora"]["estimate"] and by["lora"]["updates_usd_per_month"] == pytest.approx(24.0)
    assert by["lora"]["monthly_totals_usd"] == pytest.approx([34.0, 1024.0])
    assert by["broken"]["error"] == "planted: the index was gone" and not isinstance(by["broken"]["method"], str)


def test_refresh_frequency_scales_only_the_update_share(tmp_path):
    frames = load_run(planted(tmp_path / "run", refresh=30))
    by = {r["strategy"]: r for r in update_frame(frames, summarize(frames)).to_dict(orient="records")}
    assert by["lora"]["monthly_totals_usd"] == pytest.approx([10.0 + 180.0, 1000.0 + 180.0])
    assert by["rag"]["refresh_per_month"] == 30


def test_the_table_is_in_summary_md_report_html_and_summary_json(tmp_path):
    run = planted(tmp_path / "run")
    render_run(run)
    md = (run / "summary.md").read_text()
    assert "| lora | retrain (estimate) | 600 | $6.00 | $24.00 | $10.00 | $34.00 | $1,024 |" in md
    assert "| rag | incremental re-index | 3 | $0.0300 | $0.120 | $10.00 | $10.12 | $1,000 |" in md
    assert "broken: failed: planted: the index was gone" in md
    html = (run / "report.html").read_text()
    assert "Keeping current" in html and "month at 100,000 queries" in html and "$1,024" in html
    doc = json.loads((run / "summary.json").read_text())
    assert {r["strategy"] for r in doc["update_cost"]} == {"prompting", "rag", "lora", "broken"}


def test_a_re_index_without_a_timed_rebuild_says_so(tmp_path, monkeypatch):
    timed = ("full_rebuild_s", "check_queries", "check_agree")
    quick = {k: v for k, v in UPDATES[("rag", 0)].items() if k not in timed}
    monkeypatch.setitem(UPDATES, ("rag", 0), quick)
    monkeypatch.delitem(UPDATES, ("rag", 1))
    run = planted(tmp_path / "run")
    frames = load_run(run)
    rag = update_frame(frames, summarize(frames)).set_index("strategy").loc["rag"]
    assert rag["seconds"] == pytest.approx(2.0) and rag["usd_per_update"] == pytest.approx(0.02)
    assert rag["check"] is None and rag["full_rebuild_s"] != rag["full_rebuild_s"]  # NaN: not timed
    render_run(run)
    md = (run / "summary.md").read_text()
    assert "| rag | incremental re-index | 2 | $0.0200 |" in md
    assert "- rag: 3 chunks out, 4 in (flat index); full rebuild not timed (\\`compare\\_rebuild: true\\`" in md
    assert "full rebuild not timed" in (run / "report.html").read_text()
    assert "nan" not in md.lower()
    doc = json.loads((run / "summary.json").read_text())
    assert next(r for r in doc["update_cost"] if r["strategy"] == "rag")["full_rebuild_s"] is None


def test_a_run_without_a_corpus_change_has_no_table(tmp_path):
    store = RunStore(tmp_path / "plain")
    cell = cell_id("kb", "rag", MODEL, 0)
    store.append_rows([{"cell": cell, "task": "kb", "strategy": "rag", "model": MODEL, "seed": 0,
                        "example_id": f"e{i}", "score": 1.0, "latency_s": 1.0} for i in range(3)])
    store.append_cell({"cell": cell, "task": "kb", "strategy": "rag", "model": MODEL, "seed": 0, "status": "ok",
                       "n": 3, "prepare_s": 1.0, "predict_s": 1.0, "device": "cpu", "info": {}})
    render_run(store.root)
    assert "Update cost" not in (store.root / "summary.md").read_text()
    assert "Keeping current" not in (store.root / "report.html").read_text()

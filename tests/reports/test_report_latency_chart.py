"""The report's latency chart shows the batch-1 probe when the cells have one."""
from bench.store import RunStore
from reports.frame import load_run
from reports.html import _probe_samples, render_html


def test_latency_chart_uses_batch1_samples_when_present(planted_dir):
    store = RunStore(planted_dir)
    cells = store.read_cells()
    for c in cells:
        c["latency"] = {"warmup_s": 0.1, "default": {"n": 3, "latency_p50_ms": 7.0, "samples_ms": [5.0, 7.0, 9.0]}}
    for c in cells:
        store.append_cell(c)  # the last record of a cell wins
    frames = load_run(planted_dir)
    assert _probe_samples(frames, "planted", "rag", "tiny-llama") == [5.0, 7.0, 9.0]
    render_html(planted_dir)
    html = (planted_dir / "report.html").read_text()
    assert "one query at a time" in html and "each answered alone (batch 1)" in html
    assert "share their batch" not in html


def test_latency_chart_falls_back_to_batched_shares(planted_dir):
    frames = load_run(planted_dir)
    assert _probe_samples(frames, "planted", "rag", "tiny-llama") is None
    render_html(planted_dir)
    html = (planted_dir / "report.html").read_text()
    assert "share of the batched pass" in html and "no batch-1 probe ran" in html

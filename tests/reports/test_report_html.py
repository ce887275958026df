import base64
import hashlib
import re

from bench.store import RunStore, cell_id
from reports.html import DRILL_LIMIT, render_html

from conftest import FAILED_ERROR, QA, SENTIMENT


def _html(run_dir):
    path = render_html(run_dir)
    assert path == run_dir / "report.html"
    return path.read_text(encoding="utf-8")


def test_hostile_strings_are_escaped(run_dir):
    html = _html(run_dir)
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "onerror=alert(1)&gt;" in html  # the text is shown, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_strict_csp_allows_exactly_the_inline_style(run_dir):
    html = _html(run_dir)
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
    csp = csp.replace("&#39;", "'")
    assert csp.startswith("default-src 'none';") and "img-src data:" in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp
    assert " style=" not in html  # inline style attributes would need 'unsafe-inline'


def test_self_contained(run_dir):
    html = _html(run_dir)
    assert not re.search(r"""(src|href|xlink:href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_content(run_dir):
    html = _html(run_dir)
    assert "adaptbench run: synthetic" in html and "2024-06-01" in html
    assert html.count("<svg") >= 5  # 2 tasks x (bars + scatter) + 1 loss curve
    assert "loss curve" in html and "<polyline" in html
    # Top two within each other's interval: called a tie, not "most accurate".
    assert ("lora and rag tie on accuracy (1.00 [1.00, 1.00] vs 0.80 [0.40, 1.00]; difference +0.20 "
            "[0.00, 0.60], McNemar p=1.000); lora is fastest (p50 70 ms); all cost the same per query "
            "($0.00992 per 1,000)") in html
    assert "rag and prompting tie on exact_match (0.67 [0.00, 1.00] vs 0.33 [0.00, 1.00]" in html
    assert "prompting is fastest (p50 400 ms)" in html
    assert "Paired comparisons" in html and "Cost and break-even" in html and "Prices" in html
    assert "Retrieval" in html and "flat" in html and "trainable_params = 12345" in html
    assert "CUDA out of memory &#34;&gt;&lt;img" in html and FAILED_ERROR.startswith("CUDA out of memory")
    assert "Manifest" in html and "&#34;name&#34;: &#34;synthetic&#34;" in html
    assert "✓" in html and "✗" in html
    assert html.count("…") >= 5  # 500-character inputs are clipped
    assert SENTIMENT in html and "qa&lt;script&gt;" in html and QA not in html


def test_drill_down_is_limited(tmp_path):
    store = RunStore(tmp_path)
    cell = cell_id("big", "prompting", "m", 0)
    store.append_rows([{"cell": cell, "task": "big", "strategy": "prompting", "model": "m", "seed": 0,
                        "example_id": f"e{i}", "input": "i", "target": "t", "output": "o", "score": 1.0,
                        "latency_s": 0.1} for i in range(DRILL_LIMIT + 10)])
    store.append_cell({"cell": cell, "task": "big", "strategy": "prompting", "model": "m", "seed": 0,
                       "status": "ok", "metric": "accuracy", "info": {}})
    html = render_html(tmp_path).read_text()
    assert f"Examples ({DRILL_LIMIT} of {DRILL_LIMIT + 10})" in html
    assert f"<td>e{DRILL_LIMIT - 1}</td>" in html and f"<td>e{DRILL_LIMIT}</td>" not in html


def test_empty_run_renders(tmp_path):
    RunStore(tmp_path).cells_path.write_text("")
    html = render_html(tmp_path).read_text()
    assert "holds no results yet" in html

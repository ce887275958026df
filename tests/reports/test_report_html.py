import base64
import hashlib
import re

from bench.store import RunStore, cell_id
from reports.charts import dominated, volume
from reports.drill import DRILL_LIMIT, matches, presets
from reports.html import render_html
from reports.page import TEMPLATES

from conftest import FAILED_ERROR, QA, SENTIMENT


def _html(run_dir):
    path = render_html(run_dir)
    assert path == run_dir / "report.html"
    return path.read_text(encoding="utf-8")


def _digest(text):
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_hostile_strings_are_escaped(run_dir):
    html = _html(run_dir)
    # The one script on the page is ours, byte for byte; no data opened another.
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S | re.I)
    assert scripts == [(TEMPLATES / "drill.js").read_text()]
    assert html.lower().count("<script") == 1
    assert "<img" not in html.lower()
    assert "onerror=alert(1)&gt;" in html  # the text is shown, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_strict_csp_allows_exactly_the_inline_style_and_script(run_dir):
    html = _html(run_dir)
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
    csp = csp.replace("&#39;", "'")
    assert csp.startswith("default-src 'none';") and "img-src data:" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(styles) == 1 and len(scripts) == 1
    assert f"style-src 'sha256-{_digest(styles[0])}';" in csp
    assert f"script-src 'sha256-{_digest(scripts[0])}';" in csp
    assert " style=" not in html  # inline style attributes would need 'unsafe-inline'
    assert not re.search(r"<[^>]*\son[a-z]+=", html)  # no inline event handlers either


def test_self_contained(run_dir):
    html = _html(run_dir)
    assert not re.search(r"""(src|href|xlink:href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_content(run_dir):
    html = _html(run_dir)
    assert "adaptbench run: synthetic" in html and "2024-06-01" in html
    # Per task: pareto, latency, cost; plus one loss curve and one recall@k chart.
    assert html.count("<svg") == 2 * 3 + 1 + 2
    assert "loss curve" in html and "<polyline" in html
    # Every strategy whose paired test finds no difference from the leader is in the tie.
    assert ("lora, rag and prompting tie on accuracy (1.00 [1.00, 1.00] vs 0.80 [0.40, 1.00] vs 0.60 "
            "[0.30, 0.90]); lora has the lowest p50 latency (70 ms; uncertain: no batch-1 probes, so no interval); "
            "rag: gold passage retrieved for 40% of questions; accuracy 1.00 on those (0.67 without): retrieval, "
            "not the model, limits rag here; all cost the same per query ($0.00992 per 1,000)") in html
    assert "rag and prompting tie on exact_match (0.67 [0.00, 1.00] vs 0.33 [0.00, 1.00]" in html
    assert "prompting has the lowest p50 latency (400 ms; uncertain" in html
    # The verdicts lead the page, each linking to its task's section.
    assert html.index("Verdict per task") < html.index('<section id="task-0">')
    assert '<a href="#task-1">qa&lt;script&gt;alert(1)&lt;/script&gt;</a>' in html
    assert "Paired comparisons" in html and "Cost and break-even" in html and "Prices" in html
    assert "Retrieval" in html and "flat" in html and "trainable_params = 12345" in html
    assert "recall@k: share of questions" in html
    assert "CUDA out of memory &#34;&gt;&lt;img" in html and FAILED_ERROR.startswith("CUDA out of memory")
    assert "Manifest" in html and "&#34;name&#34;: &#34;synthetic&#34;" in html
    assert "✓" in html and "✗" in html
    assert html.count("…") >= 5  # 500-character inputs are clipped
    assert SENTIMENT in html and "qa&lt;script&gt;" in html and QA not in html


def test_pareto_marks_dominated_cells(planted_dir):
    html = _html(planted_dir)
    # rag: cheapest per query; lora: most accurate; prompting: worse and dearer than rag.
    assert "<td>frontier</td>" in html and html.count("<td>frontier</td>") == 2
    assert '<td class="dominated">dominated by rag</td>' in html
    assert html.count('class="dominated"/>') == 1 and html.count('class="frontier"/>') == 2
    assert "prompting (dominated)" in html


def test_dominated():
    # (cost, score): b is cheaper and as good as a; c is dearer and better; d has no cost.
    assert dominated([(2.0, 0.5), (1.0, 0.5), (3.0, 0.9), (None, 0.1)]) == [1, None, None, None]
    assert dominated([(1.0, 0.5), (1.0, 0.5)]) == [None, None]  # equal points do not dominate each other


def test_volume_labels():
    assert volume(168.6) == "169" and volume(5823.8) == "5.82k" and volume(1_200_000) == "1.2M"


def test_drill_filters_and_presets(planted_dir):
    assert matches("rw", "rw") and matches("rw", "r*") and not matches("rw", "w*")
    assert matches("rp", "rn") and matches("rw", "rn") and not matches("rr", "rn") and not matches("r-", "rn")
    marks = ["rrw", "rww", "rrr", "wrr"]
    found = {p["text"]: (p["pattern"], p["count"]) for p in presets(["a", "b", "c"], marks, partial=False)}
    assert found["a right, c wrong"] == ("r*n", 2) and found["b right, a wrong"] == ("nr*", 1)
    assert "c right, a wrong" in found and "a right, b wrong" in found and "b right, c wrong" in found
    assert "c right, b wrong" not in found  # no example fits: no dead link
    html = _html(planted_dir)
    # planted: columns prompting, rag, lora; rag misses p0 and p1, prompting misses p10-p39.
    assert 'href="#drill-0=nr*">rag right, prompting wrong (30)</a>' in html
    assert 'href="#drill-0=*nr">lora right, rag wrong (2)</a>' in html
    assert '<tr data-m="rwr" data-d="1"><td>p0</td>' in html
    assert '<tr data-m="wrr" data-d="1"><td>p10</td>' in html
    assert '<div class="filters" hidden>' in html  # shown only when the script runs


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


def test_pareto_labels_of_nearby_points_do_not_overlap():
    import re

    from reports.charts import pareto

    # The demo's rotten-tomatoes: prompting and rag tie on score at close costs.
    svg = str(pareto([("prompting", 0.0085, 0.56, 0.41, 0.72), ("rag", 0.0091, 0.56, 0.41, 0.72),
                      ("lora", 0.0078, 0.66, 0.50, 0.81)], "t", "accuracy"))
    labels = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" text-anchor="start"[^>]*>([^<]*\(dominated\))</text>', svg)
    assert len(labels) == 2
    (x1, y1, _), (x2, y2, _) = labels
    assert abs(float(y1) - float(y2)) >= 13  # one line apart, not printed over each other


def test_summary_table_shows_training_facts_when_a_cell_trained(run_dir, planted_dir):
    # The synthetic run's lora cells recorded 12,345 trainable parameters: the table says so.
    table = _html(run_dir)
    table = table[table.index('<section id="task-0">'):]
    table = table[:table.index("</table>")]
    assert "<td class=\"num\">12,345</td>" in table and "forgetting [95% CI]" in table
    # A run where nothing trained keeps the table as it was.
    assert "trainable params" not in _html(planted_dir)

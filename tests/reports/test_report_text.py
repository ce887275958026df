import io
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from reports import render_run
from reports.frame import load_run
from reports.compare_pairs import compare_strategies
from reports.costs import break_even_frame, price_table
from reports.markdown import md_escape, summary_markdown
from reports.summary import summarize
from reports.table import summary_table

from conftest import QA, SENTIMENT

ROOT = Path(__file__).resolve().parents[2]


def test_markdown_has_one_table_per_task(run_dir):
    md = summary_markdown(summarize(load_run(run_dir)), title="run")
    separators = [line for line in md.splitlines() if line.startswith("|---")]
    assert len(separators) == 2
    assert f"### {SENTIMENT} (accuracy)" in md
    assert "<script>" not in md and "<img" not in md and "qa&lt;script&gt;" in md
    assert "**1.000**" in md and "**0.667**" in md  # best per task in bold
    assert "lora failed: CUDA out of memory" in md
    assert "| 95% CI |" in md and "[0.30, 0.90]" in md and "$ / 1k queries" in md


def test_markdown_comparisons_and_break_even(planted_dir):
    frames = load_run(planted_dir)
    summary = summarize(frames)
    md = summary_markdown(summary, comparisons=compare_strategies(frames), break_even=break_even_frame(summary),
                          prices=price_table(summary, frames.manifest))
    assert "- lora vs prompting: +0.75 \\[0.60, 0.88\\], McNemar p&lt;0.001 -&gt; lora better (n=40; n=40 detects a difference of" in md
    assert ("- lora vs rag: +0.05 \\[0.00, 0.12\\], McNemar p=0.500 -&gt; tie (n=40; n=40 detects a difference "
            "of 0.10 (80% power); this gap needs n≈153)") in md
    assert "- prompting vs rag: rag (higher fixed cost) becomes cheaper than prompting after 400 queries" in md
    # The verdict heads each task, as in report.html, with the tie called a tie.
    assert ("**Verdict:** lora and rag tie on accuracy (1.00 \\[1.00, 1.00\\] vs 0.95 \\[0.88, 1.00\\]; "
            "difference +0.05 \\[0.00, 0.12\\], McNemar p=0.500; n=40 detects a difference of 0.10 (80% power); "
            "this gap needs n≈153); rag has the lowest p50 latency") in md
    assert md.index("**Verdict:**") < md.index("| strategy |")
    assert "| macro-F1 |" in md and "Prices: h100 at $2.99/h" in md and "Price table 2026-11.1" in md


def test_md_escape_keeps_tables_intact():
    assert md_escape("a|b\nc") == "a\\|b c"
    assert md_escape("[x](http://e)") == "\\[x\\](http://e)"


def test_terminal_table(run_dir):
    summary = summarize(load_run(run_dir))
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(summary_table(summary))
    text = out.getvalue()
    assert "prompting" in text and "0.60 [0.30,0.90]" in text and "1760" in text and "failed" in text
    assert "$0.00992" in text and "$/1k q" in text and "prep $" in text
    assert "qa<script>alert(1)</scri" in text  # plain text (folded), not parsed as markup
    table = summary_table(summary)
    score = next(c for c in table.columns if c.header == "score [95% CI]")
    styled = {cell.plain: cell.spans[0].style for cell in score._cells if cell.spans}
    # Best per task in bold; a failed cell's status in red in place of its score.
    assert styled == {"1.00 [1.00,1.00]": "bold", "0.67 [0.00,1.00]": "bold", "failed": "red"}


def test_render_run_writes_everything(run_dir):
    out = io.StringIO()
    summary = render_run(run_dir, console=Console(file=out, width=120))
    assert len(summary) == 6
    for name in ("summary.csv", "summary.json", "summary.md", "report.html", "comparisons.csv", "break_even.csv"):
        assert (run_dir / name).stat().st_size > 0
    assert len(json.loads((run_dir / "summary.json").read_text())["summary"]) == 6
    printed = out.getvalue()
    assert "CUDA out of memory" in printed
    # The "done when": score with interval, costs and break-even in the terminal.
    assert "sentiment: lora vs prompting: +0.40 [0.00, 0.80], McNemar p=0.500 -> tie (n=5; " in printed
    assert "break-even rag vs lora: same cost at every volume" in printed
    assert "Price table 2026-11.1" in printed
    assert QA in set(summary["task"])


def test_reports_never_import_strategies_or_torch():
    code = ("import sys, reports, reports.html, reports.table, reports.markdown, reports.svg, "
            "reports.compare_pairs, reports.costs, reports.intervals, reports.verdict\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('strategies', 'torch', 'faiss', 'peft', "
            "'transformers', 'sentence_transformers', 'matplotlib')]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

import io
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from reports import render_run
from reports.frame import load_run
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


def test_md_escape_keeps_tables_intact():
    assert md_escape("a|b\nc") == "a\\|b c"
    assert md_escape("[x](http://e)") == "\\[x\\](http://e)"


def test_terminal_table(run_dir):
    summary = summarize(load_run(run_dir))
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(summary_table(summary))
    text = out.getvalue()
    assert "prompting" in text and "0.600" in text and "1760" in text and "failed" in text
    assert "qa<script>alert(1)</scri" in text  # plain text (folded), not parsed as markup
    table = summary_table(summary)
    score = next(c for c in table.columns if c.header == "score")
    bold = [cell for cell in score._cells if cell.spans]
    assert [c.plain for c in bold] == ["1.000", "0.667"]


def test_render_run_writes_everything(run_dir):
    out = io.StringIO()
    summary = render_run(run_dir, console=Console(file=out, width=120))
    assert len(summary) == 6
    for name in ("summary.csv", "summary.json", "summary.md", "report.html"):
        assert (run_dir / name).stat().st_size > 0
    assert len(json.loads((run_dir / "summary.json").read_text())) == 6
    assert "CUDA out of memory" in out.getvalue()
    assert QA in set(summary["task"])


def test_reports_never_import_strategies_or_torch():
    code = ("import sys, reports, reports.html, reports.table, reports.markdown, reports.svg\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('strategies', 'torch', 'faiss', 'peft', "
            "'transformers', 'sentence_transformers', 'matplotlib')]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

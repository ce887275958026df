"""report.html in a real browser: headless Chromium loads a report whose task names,
inputs, targets, model outputs, errors and manifest carry XSS payloads, and the test
checks that nothing was logged to the console (a CSP violation or a script error is
logged there), that the charts are in the DOM, that the drill-down filter script ran,
and that no payload ran: each would set document.title, add an element or an
attribute, and the DOM after load shows none of that.

Chromium is Debian's `chromium` package; `.ci/run` installs it. A missing browser is
a failure, not a skip: a silently skipped security test protects nothing.
"""
from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.store import RunStore, cell_id
from reports.drill import matches
from reports.html import render_html

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
TITLE = "adaptbench · hostile"
PAYLOADS = [
    "<img src=x onerror=\"document.title='pwned'\">",
    "</script><script>document.title='pwned';document.body.appendChild(document.createElement('pwned'))</script>",
    "\"><svg onload=\"document.body.setAttribute('data-pwned','1')\">",
    "'><iframe srcdoc=\"<script>parent.document.title='pwned'</script>\"></iframe>",
    "</textarea></title><div id=\"pwned\">x</div>",
    "{{ 7*7 }}<!-- --><style>body{display:none}</style>",
]
HOSTILE_TASK = f"task{PAYLOADS[1]}"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: install Debian's package (`apt-get install -y chromium`, as "
                    ".ci/run does) to run the report's browser test", pytrace=False)
    return found


def browse(url: str, tmp_path: Path, *extra: str) -> tuple[str, list[str]]:
    """(DOM after load, console lines) for `url` in a fresh headless profile."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                           *extra, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


class Dom(HTMLParser):
    """Tags, attributes and the title of a dumped DOM."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.title, self._in_title, self._titles = "", False, 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_title = tag == "title" and self._titles == 0  # the page's, not an SVG's
        self._titles += tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]


def build_hostile_run(root: Path) -> None:
    """Two tasks x three strategies, a payload in every string a reader sees."""
    store = RunStore(root)
    for t, (task, metric) in enumerate([(HOSTILE_TASK, "accuracy"), ("qa", "f1")]):
        for s, strategy in enumerate(["prompting", "rag", "lora"]):
            cell = cell_id(task, strategy, "m", 0)
            rows = []
            for i in range(12):
                score = float((i + s) % 3 != 0) if metric == "accuracy" else [0.0, 0.5, 1.0][(i + s) % 3]
                rows.append({"cell": cell, "task": task, "strategy": strategy, "model": "m", "seed": 0,
                             "example_id": f"e{i}{PAYLOADS[i % 6] if i == 5 else ''}",
                             "input": f"input {i} {PAYLOADS[i % 6]}", "target": PAYLOADS[(i + 1) % 6],
                             "output": PAYLOADS[(i + s) % 6], "score": score, "latency_s": 0.05 * (s + 1) + 0.01 * i,
                             "prompt_tokens": 40 + 100 * s, "completion_tokens": 2,
                             "retrieved_ids": [PAYLOADS[0]] if strategy == "rag" else [],
                             "recall_at_k": float(i % 2) if strategy == "rag" and metric == "f1" else None,
                             "truncated": False})
            store.append_rows(rows)
            info = {"note": PAYLOADS[2]}
            if strategy == "lora":
                info["loss_curve"] = [{"step": k, "train_loss": 3 - k * 0.2, "val_loss": 3.1 - k * 0.1}
                                      for k in range(0, 10, 2)]
            if strategy == "rag":
                info.update(index=PAYLOADS[3], n_chunks=5, k=2, mode="corpus")
            store.append_cell({"cell": cell, "task": task, "strategy": strategy, "model": "m", "seed": 0,
                               "status": "ok", "metric": metric, "n": 12, "prepare_s": 10.0 * s + 1,
                               "predict_s": 0.6 * (s + 1), "peak_memory_mb": 100.0, "device": "cpu",
                               "info": info})
    failed = cell_id("qa", "lora-big", "m", 0)
    store.append_cell({"cell": failed, "task": "qa", "strategy": "lora-big", "model": "m", "seed": 0,
                       "status": "failed", "error": f"boom {PAYLOADS[0]}", "metric": "f1", "n": 0, "info": {}})
    store.write_json("manifest.json", {"name": "hostile", "created_at": "2026-01-01T00:00:00",
                                       "config": {"tasks": PAYLOADS}})


@pytest.fixture
def hostile_report(tmp_path):
    root = tmp_path / "run"
    build_hostile_run(root)
    return render_html(root)


def test_console_capture_catches_errors_and_csp_violations(tmp_path):
    # The check below is only as good as its capture: a page with a blocked inline
    # script and one with a thrown error must both show up.
    blocked = tmp_path / "blocked.html"
    blocked.write_text("<!DOCTYPE html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
                       "<title>t</title><script>document.title='ran'</script>")
    dom, console = browse(blocked.as_uri(), tmp_path)
    assert Dom(dom).title == "t" and any("Content Security Policy" in line for line in console)
    thrown = tmp_path / "thrown.html"
    thrown.write_text("<!DOCTYPE html><title>t</title><script>notAFunction()</script>")
    _, console = browse(thrown.as_uri(), tmp_path)
    assert any("Uncaught ReferenceError" in line for line in console)


def test_report_renders_and_payloads_stay_inert(hostile_report, tmp_path):
    html = hostile_report.read_text()
    # A link to one filter: rag right, lora not right, on the first task.
    pattern = "*rn"
    dom_text, console = browse(hostile_report.as_uri() + f"#drill-0={pattern}", tmp_path)
    assert console == [], "\n".join(console)
    dom = Dom(dom_text)
    assert dom.title == TITLE
    # No payload made an element or an attribute.
    assert not dom.tags("pwned") and not dom.tags("iframe") and not dom.tags("img")
    assert all(attrs.get("id") != "pwned" for _, attrs in dom.elements)
    assert all("data-pwned" not in attrs for _, attrs in dom.elements)
    assert all(not k.startswith("on") for _, attrs in dom.elements for k in attrs)
    assert len(dom.tags("script")) == 1 and len(dom.tags("style")) == 1  # ours only
    assert "pwned" not in dom.title
    # The charts are in the DOM: per task pareto, latency and cost, a loss curve each,
    # and the QA task's recall@k bars.
    svgs = dom.tags("svg")
    assert len(svgs) == 2 * 3 + 2 + 1
    assert len(dom.tags("polyline")) >= 2 and len(dom.tags("circle")) >= 12 and dom.tags("rect")
    # The filter script ran under the CSP: the filters are shown, the linked filter is
    # applied to exactly the rows the Python reference picks.
    # Without JavaScript (the page as written) the controls are hidden and every row shows.
    assert html.count('<div class="filters" hidden>') == 2 and "<tr hidden" not in html
    filters = [a for t, a in dom.elements if t == "div" and a.get("class") == "filters"]
    assert len(filters) == 2 and all("hidden" not in a for a in filters)
    rows = [a for t, a in dom.elements if t == "tr" and "data-m" in a]
    first = rows[:12]
    expected = [not matches(a["data-m"], pattern) for a in first]
    assert [("hidden" in a) for a in first] == expected and 0 < sum(expected) < 12
    assert f"{12 - sum(expected)} of 12 examples shown" in dom_text
    assert all("hidden" not in a for a in rows[12:])  # the other task's table is untouched
    # The linked table is opened; the other stays collapsed.
    assert ["open" in a for a in dom.tags("details")] == [True, False]


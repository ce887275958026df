"""Names are validated once, up front, before any model loads: length, control
characters, console markup, CSV formula prefixes, the cell-id separator and duplicates
across the grid; and every CSV the bench writes escapes formula cells."""
import csv

import pytest

import bench.cli
import bench.backends
from bench.config import RunConfig
from bench.errors import BenchError
from bench.names import csv_safe
from conftest import CountingHandle, write_task


@pytest.fixture
def no_model(monkeypatch):
    def refuse(spec, **kw):
        raise AssertionError("a model was loaded before the names were checked")
    monkeypatch.setattr(bench.backends, "load_lm", refuse)


def _spec(tmp_path, name, folder="t"):
    spec = write_task(tmp_path / folder)
    text = spec.read_text().replace("name: mini\n", f"name: {name}\n")
    spec.write_text(text)
    return spec


def _run(tmp_path, *specs):
    return bench.cli.main(["run", "--tasks", ",".join(map(str, specs)), "--strategies", "prompting", "--out",
                           str(tmp_path / "runs"), "--name", "x", "--limit", "2", "--latency-sample", "0"])


@pytest.mark.parametrize("name, message", [
    ("'a[/]b'", "holds '[/', which the console reads as a closing markup tag"),
    ('"nul\\0name"', "holds the control character U+0000"),
    ("x" * 300, "is 300 characters long; at most 64 are allowed"),
    ("'=HYPERLINK(\"http://x\")'", "starts with '=', which a spreadsheet runs as a formula"),
    ("a|b", "holds '|', which separates the parts of a cell id"),
])
def test_a_bad_task_name_is_refused_before_the_model_loads(tmp_path, no_model, capsys, name, message):
    assert _run(tmp_path, _spec(tmp_path, name)) == 2
    err = capsys.readouterr().err
    assert "mini.yaml:1: field 'name': task name" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("rows.jsonl"))


def test_two_specs_with_one_name_are_refused(tmp_path, no_model, capsys):
    a, b = _spec(tmp_path, "tickets", "a"), _spec(tmp_path, "tickets", "b")
    assert _run(tmp_path, a, b) == 2
    err = capsys.readouterr().err
    assert f"task name 'tickets' is given twice: by {a}:1 and by {b}:1" in err


def test_a_builtin_name_reused_by_a_spec_is_refused(tmp_path):
    with pytest.raises(BenchError, match="task name 'squad' is given twice"):
        RunConfig(tasks=["squad", str(_spec(tmp_path, "squad"))], strategies=["prompting"])


@pytest.mark.parametrize("label", ["x[/]", "+cmd", "p\x07", "a" * 65])
def test_bad_strategy_labels_are_refused(label):
    with pytest.raises(BenchError, match=r"config.strategies\[0\]: strategy label"):
        RunConfig(tasks=["squad"], strategies=[{"name": "prompting", "label": label}])


def test_a_cell_folder_name_too_long_for_the_file_system_is_refused():
    with pytest.raises(BenchError, match="makes a folder name of .* bytes"):
        RunConfig(tasks=["squad"], strategies=[{"name": "prompting", "label": "p" * 60}],
                  models=["/models/" + "m" * 190])


def test_every_csv_escapes_formula_cells(tmp_path, fake_world):
    from bench.runner import Runner
    from reports import render_run

    fake_world["handle"] = lambda: CountingHandle(reply="=cmd|' /C calc'!A0")
    cfg = RunConfig(tasks=["toy-qa"], strategies=["prompting", {"name": "prompting", "label": "p2", "shots": 1}],
                    out=str(tmp_path), name="r", limit=4, latency_sample=0, warmup=0, cache=False)
    Runner(cfg, log=lambda *_: None).run()
    from bench import jsonl

    cells_path = tmp_path / "r" / "cells.jsonl"
    cells = jsonl.read(cells_path).records
    cells[0].update(status="failed", error="@SUM(1+1) from a hostile error message")
    cells_path.unlink()
    jsonl.append(cells_path, cells)
    render_run(tmp_path / "r")
    assert "'@SUM(1+1)" in (tmp_path / "r" / "summary.csv").read_text()
    written = sorted((tmp_path / "r").glob("*.csv"))
    assert {p.name for p in written} >= {"summary.csv", "comparisons.csv", "break_even.csv"}
    for path in written:
        for row in csv.reader(path.open()):
            for cell in row:
                assert not cell.startswith(("=", "+", "@", "\t", "\r")) and not cell.startswith("-") or \
                    _is_number(cell), (path.name, cell)


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_csv_safe_quotes_text_and_leaves_numbers():
    import pandas as pd

    frame = pd.DataFrame({"task": ["=1+1", "-rm", "@x", "ok"], "delta": [-0.5, 0.1, 0.2, 0.3]})
    out = csv_safe(frame)
    assert out["task"].tolist() == ["'=1+1", "'-rm", "'@x", "ok"] and out["delta"].tolist() == [-0.5, 0.1, 0.2, 0.3]

"""bench compare and saved baselines, on synthetic runs with planted changes."""
import json
import re
import shutil

import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.store import RunStore, read_jsonl
from reports.frame import load_run
from reports.regression import Thresholds, compare_runs

from conftest import MODEL, PLANTED, QA, build_planted_run


def _copy(src, dst, change=None, cells=None):
    """A copy of run `src` written through the run store, as the runner writes one;
    `change(row)` may edit each row in place, `cells(cell)` each cell record (either
    returns False to drop the record)."""
    store = RunStore(dst)
    shutil.copy(src / "manifest.json", dst / "manifest.json")
    for name, fn, append in (("rows.jsonl", change, store.append_rows), ("cells.jsonl", cells, store.append_cell)):
        records = [{k: v for k, v in r.items() if not k.startswith("_")} for r in read_jsonl(src / name)]
        kept = [r for r in records if fn is None or fn(r) is not False]
        if name == "rows.jsonl":
            append(kept)
        else:
            for r in kept:
                append(r)
    return dst


def _flip(strategy, ids):
    def change(row):
        if row["strategy"] == strategy and row["example_id"] in ids:
            row["score"], row["output"] = 0.0, "wrong"
    return change


def _cell(result, strategy):
    return result[result["strategy"] == strategy].iloc[0]


def test_a_run_against_itself_passes(planted_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(planted_dir), str(planted_dir), "--fail-on-regression", "--out", str(out)]) == 0
    assert "No regression in 3 compared cells." in capsys.readouterr().out
    doc = json.loads((out / "compare.json").read_text())
    assert doc["regressions"] == 0 and len(doc["cells"]) == 3
    assert all(c["delta"] == 0 and c["n_common"] == 40 for c in doc["cells"])
    assert "No regression" in (out / "compare.md").read_text() and (out / "compare.html").exists()


def test_planted_score_regression_fails_the_gate(planted_dir, tmp_path, capsys):
    # lora is right on all 40 examples; 20 flipped to wrong is a drop of 0.5.
    new = _copy(planted_dir, tmp_path / "new", _flip("lora", {f"p{i}" for i in range(20)}))
    out = tmp_path / "cmp"
    args = ["compare", str(planted_dir), str(new), "--out", str(out)]
    assert main(args) == 0  # reported, but the exit code gates only when asked
    assert main(args + ["--fail-on-regression"]) == 1
    printed = capsys.readouterr().out
    assert "1 regression in 3 compared cells: planted / lora (score fell -0.500" in printed
    md = (out / "compare.md").read_text()
    assert "| planted | lora | tiny-llama | 40 | 1.000 → 0.500 | -0.500 \\[" in md and "**regression**" in md
    doc = json.loads((out / "compare.json").read_text())
    assert doc["regressions"] == 1 and doc["thresholds"]["tolerance"] == 0.01
    lora = next(c for c in doc["cells"] if c["strategy"] == "lora")
    assert lora["delta"] == pytest.approx(-0.5) and lora["delta_ci_high"] < -0.01


def test_a_drop_the_interval_cannot_tell_from_noise_is_no_regression(planted_dir, tmp_path):
    new = _copy(planted_dir, tmp_path / "new", _flip("lora", {"p3"}))
    result = compare_runs(load_run(planted_dir), load_run(new))
    lora = _cell(result, "lora")
    assert lora["delta"] == pytest.approx(-1 / 40) and lora["delta_ci_low"] < -0.01 < lora["delta_ci_high"] + 0.01
    assert not lora["regression"]
    # With no tolerance at all, the same drop still does not clear the interval's upper bound (0).
    assert not _cell(compare_runs(load_run(planted_dir), load_run(new), Thresholds(tolerance=0.0)),
                     "lora")["regression"]


def test_latency_and_cost_growth(planted_dir, tmp_path):
    def slower(row):
        if row["strategy"] == "rag":
            row["latency_s"] *= 2

    def slower_cell(cell):
        if cell["strategy"] == "rag":
            cell["predict_s"] *= 2

    new = _copy(planted_dir, tmp_path / "new", slower, slower_cell)
    result = compare_runs(load_run(planted_dir), load_run(new))
    rag = _cell(result, "rag")
    assert rag["latency_ratio"] == pytest.approx(2.0) and rag["cost_ratio"] == pytest.approx(2.0)
    assert rag["regression"] and any("p50 latency x2.00 (limit x1.5)" in r for r in rag["reasons"])
    assert any("cost per query x2.00" in r for r in rag["reasons"])
    loose = compare_runs(load_run(planted_dir), load_run(new), Thresholds(max_latency_ratio=2.5, max_cost_ratio=2.5))
    assert not loose["regression"].any()


def test_failed_and_missing_cells(planted_dir, tmp_path):
    def fail_rag(cell):
        if cell["strategy"] == "rag":
            cell["status"], cell["error"] = "failed", "diverged"
        return cell["strategy"] != "prompting"  # prompting's cell record vanishes

    new = _copy(planted_dir, tmp_path / "new", lambda r: r["strategy"] != "prompting", fail_rag)
    result = compare_runs(load_run(planted_dir), load_run(new))
    assert _cell(result, "rag")["status"] == "failed" and _cell(result, "rag")["regression"]
    assert _cell(result, "prompting")["status"] == "not run" and not _cell(result, "prompting")["regression"]
    assert list(result["strategy"]) == ["rag", "lora", "prompting"]  # the new run's order, then the baseline's


def test_no_common_examples_is_reported_not_gated(planted_dir, tmp_path):
    def rename(row):
        row["example_id"] = "other-" + row["example_id"]

    new = _copy(planted_dir, tmp_path / "new", rename)
    result = compare_runs(load_run(planted_dir), load_run(new))
    assert (result["n_common"] == 0).all() and not result["regression"].any()
    assert "no common examples" in _cell(result, "lora")["reasons"][0]


def test_missing_or_invalid_run_folder_is_a_clear_error(planted_dir, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), str(planted_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'" + str(tmp_path / "nope") + "' is neither a run folder" in err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), str(planted_dir)]) == 2
    assert "holds no rows.jsonl or cells.jsonl" in capsys.readouterr().err
    assert main(["compare", str(planted_dir), str(planted_dir), "--tolerance", "-1"]) == 2
    assert "--tolerance must be" in capsys.readouterr().err
    with pytest.raises(BenchError, match="--max-cost-ratio must be a ratio >= 1"):
        Thresholds(max_cost_ratio=0.5)


def test_saved_baseline_by_name(planted_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADAPTBENCH_BASELINES", str(tmp_path / "baselines"))
    assert main(["baseline", "save", "main", str(planted_dir)]) == 0
    saved = tmp_path / "baselines" / "main"
    assert sorted(p.name for p in saved.iterdir()) == ["baseline.json", "cells.jsonl", "manifest.json", "rows.jsonl"]
    assert main(["baseline", "list"]) == 0
    assert re.search(r"^main\s+run planted", capsys.readouterr().out, re.M)
    new = _copy(planted_dir, tmp_path / "new", _flip("lora", {f"p{i}" for i in range(20)}))
    assert main(["compare", "main", str(new), "--fail-on-regression"]) == 1
    assert (new / "compare.md").exists()  # default --out: the new run's folder
    # Saving again under the name replaces it: the regressed run is now the baseline.
    assert main(["baseline", "save", "main", str(new)]) == 0
    assert main(["compare", "main", str(new), "--fail-on-regression"]) == 0
    assert main(["compare", "nosuch", str(new)]) == 2
    assert "saved baselines: main" in capsys.readouterr().err
    assert main(["baseline", "save", "../evil", str(new)]) == 2
    assert "baseline name '../evil'" in capsys.readouterr().err


def test_compare_html_is_escaped_and_script_free(run_dir, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", str(run_dir), str(run_dir), "--out", str(out)]) == 0
    html = (out / "compare.html").read_text()
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert f"<td>qa&lt;script&gt;alert(1)&lt;/script&gt;</td>" in html and QA not in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert csp.startswith("default-src &#39;none&#39;;") and "script-src" not in csp
    assert "<svg" in html  # the forest chart of score changes
    md = (out / "compare.md").read_text()
    assert "<script>" not in md and "qa&lt;script&gt;" in md


def test_new_cells_are_listed(planted_dir, tmp_path):
    build_planted_run(tmp_path / "other")
    def bigger(record):
        record["model"] = "bigger"
        record["cell"] = record["cell"].replace(MODEL, "bigger")

    new = _copy(tmp_path / "other", tmp_path / "new", bigger, bigger)
    result = compare_runs(load_run(planted_dir), load_run(new))
    assert set(result["status"]) == {"new", "not run"} and not result["regression"].any()
    assert set(result.loc[result["status"] == "new", "model"]) == {"bigger"} and MODEL in set(result["model"])
    assert PLANTED in set(result["task"])

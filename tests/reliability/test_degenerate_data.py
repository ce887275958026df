"""Degenerate data warns (one `warning:` line, the run goes on): one class in train,
labels equal up to case or whitespace, a test split with one label."""
import json

import pytest

import bench.cli
import bench.backends
from bench.errors import DataWarning
from conftest import CountingHandle
from tasks import load_task


def _spec(folder, rows, labels="[good, bad]", test_rows=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = f"name: mini\nkind: classification\nlabels: {labels}\ntrain: train.jsonl\n"
    if test_rows is not None:
        (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test_rows))
        text += "test: test.jsonl\n"
    (folder / "mini.yaml").write_text(text)
    return folder / "mini.yaml"


def _rows(labels, prefix="e"):
    return [{"id": f"{prefix}{i}", "input": f"text {i}", "target": lab} for i, lab in enumerate(labels)]


def test_one_class_in_train_warns_on_the_cli_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: CountingHandle(reply="good"))
    spec = _spec(tmp_path / "t", _rows(["good"] * 20))
    rc = bench.cli.main(["run", "--tasks", str(spec), "--strategies", "prompting", "--out", str(tmp_path / "runs"),
                         "--name", "x", "--latency-sample", "0"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "warning: task 'mini': all 16 train examples have the label 'good'; a strategy can learn nothing" in err
    assert "warning: task 'mini': all 2 test examples have the label 'good'; always answering 'good' scores 1.00" \
        in err
    assert "Traceback" not in err


def test_labels_equal_up_to_case_or_spaces_warn(tmp_path):
    spec = _spec(tmp_path / "t", _rows(["Yes", "yes", "no"] * 6), labels="['Yes', 'yes', 'no']")
    with pytest.warns(DataWarning, match="labels 'Yes' and 'yes' differ only by case or spaces"):
        load_task(str(spec))


def test_a_test_split_with_one_label_warns(tmp_path):
    spec = _spec(tmp_path / "t", _rows(["good", "bad"] * 6), test_rows=_rows(["bad"] * 3, "t"))
    with pytest.warns(DataWarning, match="all 3 test examples have the label 'bad'") as seen:
        load_task(str(spec))
    assert not any("train examples" in str(w.message) for w in seen)


def test_balanced_data_does_not_warn(tmp_path, recwarn):
    load_task(str(_spec(tmp_path / "t", _rows(["good", "bad"] * 10))))
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]

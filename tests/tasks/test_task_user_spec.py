"""User task specs: valid specs load; every data problem is a DataError that names
the file, the line and the field."""
import json
from collections import Counter
from pathlib import Path

import pytest

from bench.errors import BenchError, DataError
from tasks import load_task
from tasks.user_spec import load_spec

LABELS = ("pos", "neg")


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(n: int, start: int = 0, prefix: str = "r"):
    return [{"id": f"{prefix}{i}", "input": f"text number {i}", "target": LABELS[i % 2]} for i in range(start, start + n)]


def _spec(tmp_path: Path, body: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


BASE = "name: toy\nkind: classification\ninstruction: Is it positive?\nlabels: [pos, neg]\n"


def test_jsonl_train_only_is_carved_stratified(tmp_path):
    _jsonl(tmp_path / "train.jsonl", _rows(100))
    task = load_spec(_spec(tmp_path, BASE + "train: train.jsonl\n"))
    assert (len(task.train), len(task.validation), len(task.test)) == (80, 10, 10)
    assert Counter(ex.target for ex in task.test) == {"pos": 5, "neg": 5}
    assert task.metric == "accuracy" and task.labels == LABELS and task.name == "toy"
    again = load_spec(tmp_path / "task.yaml")
    assert [ex.id for ex in again.test] == [ex.id for ex in task.test]
    other = load_spec(tmp_path / "task.yaml", seed=1)
    assert [ex.id for ex in other.test] != [ex.id for ex in task.test]


def test_csv_splits_custom_fields_and_ratios(tmp_path):
    header = "ticket,text,team\n"
    (tmp_path / "train.csv").write_text(header + "".join(f't{i},"hello, world {i}",{LABELS[i % 2]}\n'
                                                          for i in range(40)), encoding="utf-8")
    (tmp_path / "test.csv").write_text(header + "x1,one,pos\nx2,\"two\nlines\",neg\n", encoding="utf-8")
    task = load_spec(_spec(tmp_path, BASE + "train: train.csv\ntest: test.csv\n"
                                   "fields: {input: text, target: team, id: ticket}\n"
                                   "split: {ratios: [0.5, 0.5, 0.0], seed: 7}\n"))
    assert {ex.id for ex in task.test} == {"x1", "x2"}
    assert (len(task.train), len(task.validation)) == (20, 20)
    assert any(ex.input == "two\nlines" for ex in task.test)
    assert task.train[0].input.startswith("hello, world")


def test_qa_spec_with_corpus_and_generated_ids(tmp_path):
    _jsonl(tmp_path / "qa.jsonl", [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(30)])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "one.md").write_text("# One\nThe first document.", encoding="utf-8")
    (tmp_path / "docs" / "two.txt").write_text("The second document.", encoding="utf-8")
    _jsonl(tmp_path / "docs" / "more.jsonl", [{"id": "m1", "text": "Third.", "title": "T"}])
    task = load_spec(_spec(tmp_path, "kind: qa\ntrain: qa.jsonl\nfields: {input: question, target: answer}\n"
                                   "corpus: docs/*\nmax_new_tokens: 8\n"))
    assert task.metric == "f1" and task.max_new_tokens == 8 and task.name == "task"
    assert sorted(d.id for d in task.corpus) == ["docs/one.md", "docs/two.txt", "m1"]
    assert task.train[0].id.startswith("qa.jsonl:")


def test_example_spec_shipped_with_the_package():
    task = load_task(str(Path(__file__).parents[2] / "tasks" / "specs" / "ticket-routing.yaml"))
    assert task.labels == ("billing", "bug", "account")
    assert len(task.train) + len(task.validation) + len(task.test) == 45


def _error(spec: Path, *parts: str) -> str:
    with pytest.raises(DataError) as info:
        load_spec(spec)
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert isinstance(info.value, BenchError)
    return message


def test_malformed_jsonl_line(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [*_rows(2), '{"id": "x", "input": "oops"', *_rows(2, 5)])
    _error(_spec(tmp_path, BASE + "train: train.jsonl\n"), "train.jsonl:3", "malformed JSON")


def test_csv_row_with_wrong_field_count(tmp_path):
    (tmp_path / "train.csv").write_text("id,input,target\na,x,pos\nb,y,neg,extra\n", encoding="utf-8")
    _error(_spec(tmp_path, BASE + "train: train.csv\n"), "train.csv:3", "4 fields")


def test_missing_field_names_file_line_and_field(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [*_rows(3), {"id": "z", "input": "no label here"}])
    _error(_spec(tmp_path, BASE + "train: train.jsonl\n"), "train.jsonl:4", "'target'", "missing field")


def test_label_outside_the_declared_labels(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [*_rows(4), {"id": "z", "input": "meh", "target": "neutral"}])
    _error(_spec(tmp_path, BASE + "train: train.jsonl\n"), "train.jsonl:5", "'neutral'", "pos, neg")


def test_empty_split_file(tmp_path):
    _jsonl(tmp_path / "train.jsonl", _rows(20))
    (tmp_path / "test.jsonl").write_text("\n", encoding="utf-8")
    _error(_spec(tmp_path, BASE + "train: train.jsonl\ntest: test.jsonl\n"), "test.jsonl", "no examples")


def test_empty_resulting_split(tmp_path):
    _jsonl(tmp_path / "train.jsonl", _rows(20))
    _error(_spec(tmp_path, BASE + "train: train.jsonl\nsplit: {ratios: [0.9, 0.1, 0.0]}\n"),
           "task.yaml", "split 'test' is empty")


def test_duplicate_ids_across_splits_name_both_places(tmp_path):
    _jsonl(tmp_path / "train.jsonl", _rows(10))
    _jsonl(tmp_path / "test.jsonl", _rows(2, 100, "t") + _rows(1, 3))
    message = _error(_spec(tmp_path, BASE + "train: train.jsonl\ntest: test.jsonl\n"),
                     "test.jsonl:3", "duplicate id 'r3'", "train.jsonl:4")
    assert "validation" not in message.split(":")[0]


def test_text_that_is_not_utf8(tmp_path):
    good = "".join(json.dumps(r) + "\n" for r in _rows(2)).encode()
    (tmp_path / "train.jsonl").write_bytes(good + b'{"id": "x", "input": "caf\xe9", "target": "pos"}\n')
    _error(_spec(tmp_path, BASE + "train: train.jsonl\n"), "train.jsonl:3", "not UTF-8")
    (tmp_path / "train.csv").write_bytes(b"id,input,target\na,ok,pos\nb,\xa315,neg\n")
    _error(_spec(tmp_path, BASE + "train: train.csv\n", "csv.yaml"), "train.csv:3", "not UTF-8")


def test_missing_file(tmp_path):
    _error(_spec(tmp_path, BASE + "train: nowhere.jsonl\n"), "task.yaml:5", "nowhere.jsonl", "not found")
    _error(tmp_path / "absent.yaml", "absent.yaml", "not found")


def test_unknown_kind_metric_and_key(tmp_path):
    _jsonl(tmp_path / "train.jsonl", _rows(20))
    _error(_spec(tmp_path, "kind: clasification\ntrain: train.jsonl\n"), "task.yaml:1", "'classification'")
    _error(_spec(tmp_path, BASE + "metric: acuracy\ntrain: train.jsonl\n"), "task.yaml:5", "'accuracy'")
    _error(_spec(tmp_path, BASE + "train: train.jsonl\nlables: [a, b]\n"), "task.yaml:6", "'lables'",
           "did you mean 'labels'")
    _error(_spec(tmp_path, BASE + "train: train.jsonl\nfields: {inptu: text}\n"), "task.yaml:6", "fields.inptu")


def test_bad_yaml_and_boolean_labels(tmp_path):
    _error(_spec(tmp_path, "kind: [unclosed\n"), "task.yaml", "not valid YAML")
    _jsonl(tmp_path / "train.jsonl", _rows(20))
    _error(_spec(tmp_path, "kind: classification\nlabels: [yes, no]\ntrain: train.jsonl\n"),
           "task.yaml:2", "booleans")


def test_csv_line_numbers_count_physical_lines(tmp_path):
    (tmp_path / "train.csv").write_bytes(b'id,input,target\r\na,"two\r\nlines",pos\r\nb,x,neg\r\nc,,pos\r\n')
    _error(_spec(tmp_path, BASE + "train: train.csv\n"), "train.csv:5", "'input'", "is empty")


def test_bad_split_options(tmp_path):
    _jsonl(tmp_path / "train.jsonl", _rows(20))
    _error(_spec(tmp_path, BASE + "train: train.jsonl\nsplit:\n  ratios: [0.7, 0.7, 0.1]\n"),
           "task.yaml:7", "split.ratios", "sum to 1")
    _error(_spec(tmp_path, BASE + "train: train.jsonl\nsplit: {seed: one}\n"), "task.yaml:6", "split.seed")
    _error(_spec(tmp_path, "kind: qa\nlabels: [a, b]\ntrain: train.jsonl\n"), "task.yaml:2", "only to classification")

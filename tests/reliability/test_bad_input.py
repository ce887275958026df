"""The malformed-data suite, through the CLI: each bad input gets one clear line naming
the file and line (or a close match), exit code 2, never a traceback, never a silent zero."""
import json

import pytest

import bench.cli
import bench.backends
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import RunStore, read_jsonl
from conftest import write_task

GOOD = [{"id": f"e{i}", "input": f"text {i}", "target": "good" if i % 2 else "bad"} for i in range(12)]


def _lines(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def _spec(folder, train: str | bytes, test: str | bytes | None = None, suffix="jsonl", extra=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"train.{suffix}").write_bytes(train.encode() if isinstance(train, str) else train)
    text = f"name: mini\nkind: classification\nlabels: [good, bad]\ntrain: train.{suffix}\n{extra}"
    if test is not None:
        (folder / f"test.{suffix}").write_bytes(test.encode() if isinstance(test, str) else test)
        text += f"test: test.{suffix}\n"
    (folder / "mini.yaml").write_text(text)
    return folder / "mini.yaml"


CASES = {
    "malformed-jsonl": (lambda d: _spec(d, _lines(GOOD[:2]) + '{"id": "e9", "input": "x"\n'),
                        ["train.jsonl:3", "malformed JSON"]),
    "malformed-csv": (lambda d: _spec(d, "id,input,target\ne1,hello,good\ne2,too,many,fields\n", suffix="csv"),
                      ["train.csv:3", "row has 4 fields, the header has 3"]),
    "missing-field": (lambda d: _spec(d, _lines(GOOD[:1]) + '{"id": "e5", "input": "no target"}\n'),
                      ["train.jsonl:2", "field 'target'", "missing field"]),
    "label-outside-set": (lambda d: _spec(d, _lines(GOOD[:3]) + '{"id": "e7", "input": "x", "target": "meh"}\n'),
                          ["train.jsonl:4", "'meh' is not one of the declared labels"]),
    "empty-split": (lambda d: _spec(d, _lines(GOOD), test="\n"), ["test.jsonl", "no examples"]),
    "tiny-split": (lambda d: _spec(d, _lines(GOOD), test=_lines([{"id": "t1", "input": "x", "target": "good"}])),
                   ["has 1 test example(s); at least 2 are needed"]),
    "duplicate-ids": (lambda d: _spec(d, _lines(GOOD[:4] + [GOOD[1]])),
                      ["train.jsonl:5", "duplicate id 'e1', first seen at", "train.jsonl:2"]),
    "not-utf8": (lambda d: _spec(d, _lines(GOOD[:1]).encode() + b'{"id": "e3", "input": "caf\xe9", '
                                 b'"target": "good"}\n'), ["train.jsonl:2", "not UTF-8", "byte offset 75"]),
    "python-yaml": (lambda d: _spec(d, _lines(GOOD), extra="instruction: !!python/object/apply:os.system "
                                    "['touch PWNED']\n"), ["mini.yaml:5", "not valid YAML"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_task_data_is_one_clear_line(case, tmp_path, capsys):
    make, expected = CASES[case]
    spec = make(tmp_path / "task")
    rc = bench.cli.main(["run", "--tasks", str(spec), "--strategies", "prompting", "--out",
                         str(tmp_path / "runs"), "--name", "x"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    for piece in expected:
        assert piece in err, (piece, err)
    assert not (tmp_path / "PWNED").exists() and not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize("flag,value,hint", [("--tasks", "rotten-tomatos", "Did you mean 'rotten-tomatoes'"),
                                             ("--strategies", "lroa", "Did you mean 'lora'"),
                                             ("--model", "smollm2-13m", "Did you mean 'smollm2-135m'")])
def test_unknown_names_get_close_matches(flag, value, hint, tmp_path, capsys):
    args = ["run", "--tasks", str(write_task(tmp_path / "t")), "--out", str(tmp_path), "--name", "x",
            "--strategies", "prompting", "--model", "smollm2-135m"]
    args[args.index(flag) + 1] = value
    assert bench.cli.main(args) == 2
    err = capsys.readouterr().err
    assert hint in err and "Traceback" not in err


def test_unwritable_output_is_a_clear_message(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    rc = bench.cli.main(["run", "--tasks", str(write_task(tmp_path / "t")), "--strategies", "prompting",
                         "--out", str(tmp_path / "file"), "--name", "x"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and "Traceback" not in err and "file" in err


def test_truncated_prompts_are_counted_per_cell_and_in_the_summary(tmp_path, monkeypatch):
    from fakes import tiny_handle
    from reports.frame import load_run
    from reports.summary import summarize

    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: tiny_handle(max_context=64))
    spec = write_task(tmp_path / "t", n=12, long_input=True)
    cfg = RunConfig(tasks=[str(spec)], strategies=["prompting"], out=str(tmp_path), name="long", limit=4,
                    latency_sample=0, warmup=0)
    run_dir = Runner(cfg, log=lambda *_: None).run()
    rows = RunStore(run_dir).read_rows()
    assert len(rows) == 4 and all(r["truncated"] for r in rows)
    assert read_jsonl(run_dir / "cells.jsonl")[0]["truncated_n"] == 4
    assert summarize(load_run(run_dir))["truncated_n"].tolist() == [4]

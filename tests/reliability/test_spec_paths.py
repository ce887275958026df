"""Paths stay where the user put them: a task spec's data files and corpus globs resolve
inside its own folder; `..`, absolute paths and symlinks leading out are refused unless
the person running the bench allows that folder (`--allow-path`)."""
import os

import pytest

import bench.cli
from bench.errors import BenchError
from conftest import write_task
from tasks.user_spec import load_spec


@pytest.fixture
def secret_file(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    return outside / "passwd.txt"


def _spec_with_corpus(tmp_path, corpus: str):
    spec = write_task(tmp_path / "task")
    (tmp_path / "task" / "docs").mkdir(exist_ok=True)
    (tmp_path / "task" / "docs" / "a.md").write_text("an inside document")
    spec.write_text(spec.read_text() + f"corpus: {corpus}\n")
    return spec


def test_a_symlink_in_the_corpus_pointing_outside_is_refused(tmp_path, secret_file, capsys):
    spec = _spec_with_corpus(tmp_path, "docs/*")
    os.symlink(secret_file, tmp_path / "task" / "docs" / "passwd.txt")
    rc = bench.cli.main(["run", "--tasks", str(spec), "--strategies", "rag", "--out", str(tmp_path / "runs"),
                         "--name", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "mini.yaml:6: field 'corpus':" in err and f"resolves to {secret_file}, outside the spec's folder" in err
    assert "--allow-path DIR" in err


def test_a_glob_climbing_out_of_the_spec_folder_is_refused(tmp_path, secret_file):
    spec = _spec_with_corpus(tmp_path, "../outside/*.txt")
    with pytest.raises(BenchError, match="outside the spec's folder"):
        load_spec(spec)


def test_absolute_paths_are_refused(tmp_path, secret_file):
    spec = _spec_with_corpus(tmp_path, str(secret_file))
    with pytest.raises(BenchError, match=r"field 'corpus': absolute pattern"):
        load_spec(spec)
    spec = write_task(tmp_path / "task2")
    spec.write_text(spec.read_text().replace("train: mini.jsonl", f"train: {tmp_path / 'task' / 'mini.jsonl'}"))
    with pytest.raises(BenchError, match=r"mini.yaml:4: field 'train': absolute path"):
        load_spec(spec)


def test_a_data_file_symlinked_from_outside_is_refused(tmp_path):
    spec = write_task(tmp_path / "task")
    real = tmp_path / "elsewhere.jsonl"
    (tmp_path / "task" / "mini.jsonl").rename(real)
    os.symlink(real, tmp_path / "task" / "mini.jsonl")
    with pytest.raises(BenchError, match=r"field 'train': 'mini.jsonl' resolves to .*elsewhere.jsonl, outside"):
        load_spec(spec)


def test_allow_path_lets_the_user_and_only_the_user_widen_it(tmp_path, secret_file, monkeypatch):
    spec = _spec_with_corpus(tmp_path, "../outside/*.txt")
    monkeypatch.setenv("ADAPTBENCH_ALLOW_PATHS", str(secret_file.parent))
    task = load_spec(spec)
    assert [d.text for d in task.corpus] == ["root:x:0:0:root:/root:/bin/bash"]
    inside = _spec_with_corpus(tmp_path / "b", "docs/**/*.md")  # inside the folder: fine without any option
    monkeypatch.delenv("ADAPTBENCH_ALLOW_PATHS")
    assert [d.text for d in load_spec(inside).corpus] == ["an inside document"]

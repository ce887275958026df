"""A run killed in the middle of a task group (the local executor predicts every cell
of a task x model before probing any) keeps what its cells computed, in the run
folder, whatever the cache setting: `--resume` neither prepares nor predicts a cell
whose checkpoint holds its work, and gives the rows an uninterrupted run gives. A
damaged checkpoint line is reported by file and line and its work computed again."""
import json

import pytest

import bench.backends
import bench.cli
import checkpoint_fakes as fakes
import tasks as tasks_pkg
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import RunStore, read_jsonl
from fakes import FakeHandle, toy_classification
from strategies import STRATEGIES

FIRST, SECOND = "toy-sentiment|a|smollm2-135m|seed0", "toy-sentiment|b|smollm2-135m|seed0"


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: FakeHandle(name="fake", fingerprint="fake:0"))
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: toy_classification())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    monkeypatch.setitem(STRATEGIES._table, "saver", "checkpoint_fakes:STRATEGY")
    fakes.reset()
    yield fakes.LOG
    fakes.reset()


def _config(tmp_path, name, cache=False, latency_sample=2):
    return RunConfig(tasks=["toy-cls"], out=str(tmp_path), name=name, limit=8,
                     checkpoint_every=3, latency_sample=latency_sample, warmup=1, cache=cache,
                     strategies=[{"name": "saver", "label": "a", "salt": 1},
                                 {"name": "saver", "label": "b", "salt": 2}])


def _rows(run_dir):
    return {(r["cell"], r["example_id"]): (r["output"], r["score"]) for r in RunStore(run_dir).read_rows()}


def _killed_run(tmp_path, name="killed", **kw):
    """The second cell dies in its first predicted chunk, after the first cell predicted every row."""
    cfg = _config(tmp_path, name, **kw)
    fakes.KILL["salt"] = 2
    with pytest.raises(fakes.Killed):
        Runner(cfg, log=lambda *_: None).run()
    fakes.reset()
    store = RunStore(cfg.run_dir)
    assert read_jsonl(cfg.run_dir / "cells.jsonl") == []  # nothing was recorded: the probes never ran
    assert len(store.read_partial(FIRST)) == 8 and store.read_partial(SECOND) == []
    assert [r["cell"] for r in store.read_prepared(FIRST)] == [FIRST]  # both prepares are checkpointed
    assert [r["cell"] for r in store.read_prepared(SECOND)] == [SECOND]
    return cfg


def _events_since(run_dir, start):
    return [(e["event"], e.get("cell")) for e in read_jsonl(run_dir / "events.jsonl")[start:]]


@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "cache"])
@pytest.mark.parametrize("latency_sample", [2, 0], ids=["probed", "no-probes"])
def test_resume_after_a_kill_mid_group_neither_prepares_nor_predicts_the_checkpointed_cell(
        tmp_path, world, cache, latency_sample):
    whole = Runner(_config(tmp_path, "whole", cache=False, latency_sample=latency_sample), log=lambda *_: None).run()
    fakes.reset()
    cfg = _killed_run(tmp_path, cache=cache, latency_sample=latency_sample)
    before = len(read_jsonl(cfg.run_dir / "events.jsonl"))

    Runner(cfg, log=lambda *_: None).run()
    assert world["prepare"] == []  # both prepares came back from the run folder
    batches = [(salt, ids) for salt, ids in world["predict"] if len(ids) > 1]  # probes and warm-up are batch-1
    assert [salt for salt, _ in batches] == [2, 2, 2]  # only the killed cell's chunks: 3 + 3 + 2 examples
    assert ("predict", FIRST) not in _events_since(cfg.run_dir, before)
    assert ("prepare", FIRST) not in _events_since(cfg.run_dir, before)
    # The probes need the first cell's artifacts; without probes nothing loads them.
    assert world["load"] == ([7, 14] if latency_sample else [14])
    assert _rows(cfg.run_dir) == _rows(whole)

    cells = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}
    first, second = cells[FIRST], cells[SECOND]
    assert (first["resumed_n"], first["computed_n"]) == (8, 0)
    assert first["prepare_from"] == ("checkpoint" if latency_sample else
                                     "checkpoint, not loaded (nothing left needs it)")
    assert first["info"]["weight"] == 7 and first["info"]["trained"] is True
    assert (second["resumed_n"], second["computed_n"], second["prepare_from"]) == (0, 8, "checkpoint")
    assert all(c["status"] == "ok" for c in cells.values())
    if latency_sample:  # still probed together, round-robin
        assert first["latency"]["default"]["interleaved"] and first["latency"]["default"]["n"] == 2
    for cell in (FIRST, SECOND):  # the checkpoint files go with the record; the artifacts stay
        assert not RunStore(cfg.run_dir).partial_path(cell).exists()
        assert not RunStore(cfg.run_dir).prepared_path(cell).exists()
        assert (RunStore(cfg.run_dir).artifacts_dir(cell) / "prepared" / "weight.json").is_file()


def test_cli_resume_of_a_no_cache_run_uses_the_checkpoint(tmp_path, world):
    cfg = _killed_run(tmp_path)
    assert bench.cli.main(["run", "--resume", str(cfg.run_dir)]) == 0
    assert world["prepare"] == [] and 1 not in {salt for salt, ids in world["predict"] if len(ids) > 1}
    cells = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}
    assert cells[FIRST]["resumed_n"] == 8 and cells[FIRST]["prepare_from"] == "checkpoint"


def _damage(path, line, how):
    lines = path.read_text().splitlines(keepends=True)
    if how == "flip":  # valid JSON, altered content: the checksum no longer matches
        record = json.loads(lines[line - 1])
        key = "output" if "output" in record else "prepare_s"
        record[key] = "tampered" if key == "output" else 999.0
        lines[line - 1] = json.dumps(record) + "\n"
    else:  # torn: a writer killed mid-line
        lines[line - 1] = lines[line - 1][: len(lines[line - 1]) // 2]
    path.write_text("".join(lines))


@pytest.mark.parametrize("how", ["flip", "torn"])
def test_a_damaged_row_line_is_reported_by_file_and_line_and_predicted_again(tmp_path, world, how):
    whole = Runner(_config(tmp_path, "whole"), log=lambda *_: None).run()
    fakes.reset()
    cfg = _killed_run(tmp_path)
    partial = RunStore(cfg.run_dir).partial_path(FIRST)
    line = 8 if how == "torn" else 2  # a kill tears the last line
    _damage(partial, line, how)
    logs = []
    Runner(cfg, log=logs.append).run()
    said = [str(m) for m in logs if f"{partial} line {line}: damaged" in str(m)]
    assert said, logs
    first = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}[FIRST]
    assert (first["resumed_n"], first["computed_n"]) == (7, 1)  # only the damaged line's example
    assert any(f"line {line}" in note for note in first["notes"])
    assert _rows(cfg.run_dir) == _rows(whole)


def test_a_damaged_prepare_line_is_reported_and_the_cell_prepared_again(tmp_path, world):
    whole = Runner(_config(tmp_path, "whole"), log=lambda *_: None).run()
    fakes.reset()
    cfg = _killed_run(tmp_path)
    ref = RunStore(cfg.run_dir).prepared_path(FIRST)
    _damage(ref, 1, "flip")
    logs = []
    Runner(cfg, log=logs.append).run()
    assert any(f"{ref} line 1: damaged" in str(m) for m in logs), logs
    assert world["prepare"] == [1]  # the first cell only: the second's checkpoint is intact
    first = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}[FIRST]
    assert first["prepare_from"] == "computed" and first["resumed_n"] == 8
    assert _rows(cfg.run_dir) == _rows(whole)


def test_changed_prepared_files_are_not_trusted(tmp_path, world):
    cfg = _killed_run(tmp_path)
    weights = RunStore(cfg.run_dir).artifacts_dir(FIRST) / "prepared" / "weight.json"
    weights.write_text(json.dumps({"weight": 123}))  # what the checkpoint's sha256 does not describe
    logs = []
    Runner(cfg, log=logs.append).run()
    assert world["prepare"] == [1] and 123 not in world["load"]
    first = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}[FIRST]
    assert first["prepare_from"] == "computed"
    assert any("weight.json changed" in note and str(weights.parent) in note for note in first["notes"])
    assert json.loads(weights.read_text())["weight"] == 7  # prepared again, and checkpointed again


def test_a_checkpoint_of_another_context_is_not_used(tmp_path, world):
    cfg = _killed_run(tmp_path)
    changed = _config(tmp_path, "killed")
    changed.train_limit = 3  # shapes what prepare makes: another prepare context
    Runner(changed, log=lambda *_: None).run()
    assert sorted(world["prepare"]) == [1, 2]
    first = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}[FIRST]
    assert first["prepare_from"] == "computed" and any("another context" in n for n in first["notes"])


def test_a_remote_workers_prepared_artifacts_arrive_whole_through_the_sink(tmp_path):
    """The Ray worker's channel ships the folder's bytes; the sink writes them into the run folder."""
    import queue

    from bench import prepared
    from bench.executors.ray_worker import _QueueChannel
    from bench.sink import ResultSink

    worker_dir = tmp_path / "worker" / "prepared"
    worker_dir.mkdir(parents=True)
    (worker_dir / "weights").mkdir()
    (worker_dir / "weights" / "adapter.safetensors").write_bytes(b"\x00weights")
    sha = prepared._hashes(worker_dir)
    q = queue.Queue()
    channel = _QueueChannel(q)
    channel.prepared("c|lora|m|seed0", {"cell": "c|lora|m|seed0", "key": "k", "folder": "prepared", "sha256": sha},
                     worker_dir)
    kind, ref, files, folder = q.get()
    assert kind == "prepared" and folder is None and set(files) == {"weights/adapter.safetensors"}
    sink = ResultSink(tmp_path / "run")
    sink.prepared("c|lora|m|seed0", ref, folder=folder, files=files)
    ckpt = sink.checkpoint("c|lora|m|seed0")
    assert ckpt.prepared["key"] == "k" and prepared.problems(ckpt.folder, sha) == []
    assert str(worker_dir) in channel.sent  # the final result does not ship them twice

    files["weights/adapter.safetensors"] = b"\x00changed in transit"
    logs = []
    ResultSink(tmp_path / "run2", log=logs.append).prepared("c", {**ref, "cell": "c"}, files=files)
    assert ResultSink(tmp_path / "run2").checkpoint("c").prepared is None  # never a line for a damaged copy
    assert any("arrived damaged" in str(m) for m in logs)


def test_checkpointed_artifacts_that_will_not_load_cost_a_prepare_not_the_cell(tmp_path, world, monkeypatch):
    cfg = _killed_run(tmp_path)

    def broken(self, folder, task, lm, facts):
        raise ValueError("truncated safetensors header")

    monkeypatch.setattr(fakes.SaverStore, "load", broken)
    Runner(cfg, log=lambda *_: None).run()
    cells = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}
    assert all(c["status"] == "ok" and c["prepare_from"] == "computed" for c in cells.values())
    assert sorted(world["prepare"]) == [1, 2] and cells[FIRST]["computed_n"] == 0
    assert any("did not load" in n and "truncated safetensors header" in n for n in cells[FIRST]["notes"])


def test_a_strategy_without_saved_artifacts_keeps_its_facts_and_is_not_prepared_again(tmp_path, world):
    """k-shot prompting saves nothing (its prepare is cheap): the checkpoint keeps its facts
    (the demonstrations chosen), so a checkpointed cell that nothing needs artifacts for skips prepare."""
    def config(name):
        return RunConfig(tasks=["toy-cls"], out=str(tmp_path), name=name, limit=8, checkpoint_every=3,
                         latency_sample=0, warmup=0, cache=False,
                         strategies=[{"name": "prompting", "shots": 2}, {"name": "saver", "label": "b", "salt": 2}])
    whole = Runner(config("whole"), log=lambda *_: None).run()
    cfg = config("killed")
    fakes.KILL["salt"] = 2
    with pytest.raises(fakes.Killed):
        Runner(cfg, log=lambda *_: None).run()
    fakes.reset()
    before = len(read_jsonl(cfg.run_dir / "events.jsonl"))
    Runner(cfg, log=lambda *_: None).run()
    cell = "toy-sentiment|prompting|smollm2-135m|seed0"
    assert not [e for e in _events_since(cfg.run_dir, before) if e[1] == cell]
    resumed = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}[cell]
    original = {c["cell"]: c for c in read_jsonl(whole / "cells.jsonl")}[cell]
    assert resumed["prepare_from"].startswith("checkpoint, not loaded") and resumed["computed_n"] == 0
    assert resumed["info"]["demo_ids"] == original["info"]["demo_ids"] and len(original["info"]["demo_ids"]) == 2
    assert _rows(cfg.run_dir) == _rows(whole)

"""Many writers, one truth: the manifest is merged under a lock, and a process whose
grid is unfinished exits non-zero without stamping the run finished."""
import json
import multiprocessing as mp

import bench.cli
from bench.config import RunConfig
from bench.runner import Runner
from bench.sink import ResultSink, merge_manifest
from bench.store import RunStore, read_jsonl
from grids import fake_world  # noqa: F401 (a fixture)


def _run(cfg, barrier):
    barrier.wait()
    Runner(cfg, log=lambda *_: None).run()


def test_two_processes_on_one_name_with_different_tasks_keep_each_others_entries(tmp_path, fake_world):
    common = dict(strategies=["prompting", {"name": "prompting", "label": "p2", "shots": 2}], seeds=[0, 1, 2],
                  out=str(tmp_path), name="shared", limit=8, checkpoint_every=1, latency_sample=0, warmup=0,
                  cache=False)
    configs = [RunConfig(tasks=["toy-cls"], **common), RunConfig(tasks=["toy-qa"], **common)]
    ctx = mp.get_context("fork")  # the children inherit the fake model and toy tasks
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_run, args=(cfg, barrier)) for cfg in configs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    run_dir = configs[0].run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["tasks"]) == {"toy-sentiment", "toy-facts"}
    cells = {c["cell"] for c in read_jsonl(run_dir / "cells.jsonl")}
    assert len(cells) == 2 * 2 * 3 and set(manifest["cells"]) == cells == set(manifest["grid"])
    assert all(entry["hardware"]["device"] == "cpu" for entry in manifest["cells"].values())
    assert manifest["config"]["tasks"] in (["toy-cls", "toy-qa"], ["toy-qa", "toy-cls"])  # resume covers both
    assert manifest["finished_at"] and manifest["models"]


def test_merge_keeps_entries_and_the_earliest_creation():
    disk = {"created_at": "t0", "tasks": {"a": 1}, "artifacts": {"c1": {"x_sha256": "1"}}, "grid": ["c1"],
            "config": {"tasks": ["a"], "limit": 3}, "finished_at": "t1"}
    mine = {"created_at": "t2", "tasks": {"b": 2}, "artifacts": {}, "config": {"tasks": ["b"], "limit": 3}}
    out = merge_manifest(disk, mine, ["c2"])
    assert out["tasks"] == {"a": 1, "b": 2} and out["artifacts"] == {"c1": {"x_sha256": "1"}}
    assert out["created_at"] == "t0" and out["grid"] == ["c1", "c2"] and out["config"]["tasks"] == ["a", "b"]
    other = merge_manifest(disk, {"config": {"tasks": ["b"], "limit": 4}}, [])
    assert other["config"] == {"tasks": ["b"], "limit": 4}  # a different run config is not blended


def test_a_grid_left_unfinished_exits_non_zero_and_is_not_stamped(tmp_path, fake_world, capsys):
    args = ["run", "--tasks", "toy-cls,toy-qa", "--strategies", "prompting", "--out", str(tmp_path),
            "--name", "busy", "--limit", "4", "--latency-sample", "0"]
    busy = "toy-facts|prompting|smollm2-135m|seed0"
    with RunStore(tmp_path / "busy").claim(busy) as mine:  # a peer process is running this cell
        assert mine
        assert bench.cli.main(args) == 4
    err = capsys.readouterr().err
    assert "1 cell(s) of this grid are unfinished" in err and "Traceback" not in err
    manifest = json.loads((tmp_path / "busy" / "manifest.json").read_text())
    assert "finished_at" not in manifest and busy in manifest["grid"]
    assert [c["cell"] for c in read_jsonl(tmp_path / "busy" / "cells.jsonl")] == \
        ["toy-sentiment|prompting|smollm2-135m|seed0"]
    assert bench.cli.main(args) == 0  # the peer is gone: the cell runs, the run is finished
    manifest = json.loads((tmp_path / "busy" / "manifest.json").read_text())
    assert manifest["finished_at"] and ResultSink(tmp_path / "busy").finish(manifest["grid"]) == []

"""The results database: runs recorded and trended, damage reported and rebuilt from
the run folders, concurrent writers, the config block, the runner's and the CLI's calls."""
from __future__ import annotations

import multiprocessing as mp
import sqlite3
import warnings

import pytest

from bench import history, history_db
from bench.cli import main
from bench.errors import BenchError, DataWarning
from history_runs import DIRECTIONS, MODEL, RUNS, TASK, plant_all, plant_run
from reports.trend import print_trend


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A temp database (never the user's cache), a temp baselines folder, and a working
    folder without a runs/ of its own."""
    db = tmp_path / "hist" / "history.sqlite"
    monkeypatch.setenv(history.ENV, str(db))
    monkeypatch.setenv("ADAPTBENCH_BASELINES", str(tmp_path / "baselines"))
    monkeypatch.chdir(tmp_path)
    return db


def recorded(db, **filters):
    con = history.open_history(db)
    try:
        return history.trend(con, **filters)
    finally:
        con.close()


def test_three_runs_recorded_and_their_trend(world, tmp_path):
    runs = plant_all(tmp_path / "runs")
    for folder in runs.values():
        history.record_run(world, folder)
    rows = recorded(world)
    assert [(r["strategy"], r["run"]) for r in rows] == [(s, n) for s in ("prompting", "rag") for n in RUNS]
    for strategy, words in DIRECTIONS.items():
        assert [r["direction"] for r in rows if r["strategy"] == strategy] == words
    first = rows[0]
    assert first["score"] == pytest.approx(12 / 40) and first["score_ci_low"] < 0.3 < first["score_ci_high"]
    assert first["git_commit"] == "1111111aaaa" and first["finished_at"].startswith("2026-11-01")
    assert first["latency_p95_ms"] > first["latency_p50_ms"] > 0 and first["cost_per_1k_usd"] > 0
    assert len({r["config_hash"] for r in rows}) == 1  # names and out folders differ, the config does not
    # Re-recording a run replaces it: still three runs.
    history.record_run(world, runs["run-2"])
    assert len(recorded(world)) == 6
    assert [r["run"] for r in recorded(world, strategy="rag", last=2)] == ["run-2", "run-3"]
    assert recorded(world, strategy="rag", last=1)[0]["direction"] == "worse"  # against the run before, still


def test_bench_history_prints_the_trend(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    runs = plant_all(tmp_path / "runs")
    args = [a for folder in runs.values() for a in ("--record", str(folder))]
    assert main(["history", *args]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip().startswith("run-")]
    assert len(lines) == 6, out
    assert out.index(f"{TASK} · prompting · {MODEL}") < out.index(lines[0]) < out.index(f"{TASK} · rag · {MODEL}")
    for line, run, word in zip(lines, [*RUNS] * 2, DIRECTIONS["prompting"] + DIRECTIONS["rag"]):
        assert run in line and line.rstrip().endswith(word), line
    assert "0.300 [0.175,0.450]" in lines[0] and "1111111 " in lines[0] and "11-01 10:00" in lines[0]
    assert "Worse than the run before, beyond the intervals: 1 cell(s)" in out
    assert main(["history", "--strategy", "prompting", "--last", "1"]) == 0
    out = capsys.readouterr().out
    assert "run-3" in out and "run-1" not in out and "rag" not in out


def test_no_database_yet_says_so(world, capsys):
    assert main(["history"]) == 0
    assert "no history yet" in capsys.readouterr().out and not world.exists()


def test_bench_history_finds_the_database_a_config_names(world, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(history.ENV)
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path / "cache"))  # the default, never the user's
    team = tmp_path / "team" / "results.sqlite"
    config = tmp_path / "nightly.yaml"
    config.write_text(f"tasks: [{TASK}]\nhistory:\n  path: {team}\n")
    runs = plant_all(tmp_path / "runs")
    history.record_run(team, runs["run-1"])
    assert main(["history"]) == 0  # without the config: the default file, which does not exist
    out = " ".join(capsys.readouterr().out.split())
    default = tmp_path / "cache" / history.FILE
    assert f"no history yet: {default} does not exist (looked there: the default: history.sqlite in the cache " \
           "folder ($ADAPTBENCH_CACHE))" in out
    assert "`--config FILE` (the run config whose `history: {path: ...}` names it), `--db FILE`, or " \
           "ADAPTBENCH_HISTORY=FILE" in out
    assert main(["history", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "run-1" in out and "no history yet" not in out
    monkeypatch.setenv(history.ENV, str(tmp_path / "ci.sqlite"))  # as for `bench run`, the variable wins
    assert main(["history", "--config", str(config)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"(looked there: $ADAPTBENCH_HISTORY, which overrides history.path in {config})" in out


def test_a_bad_history_block_in_the_config_names_its_line(world, tmp_path, capsys):
    config = tmp_path / "nightly.yaml"
    config.write_text("tasks: [x]\nhistory:\n  record: sometimes\n")
    assert main(["history", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "nightly.yaml:3" in err and "record" in err and "sometimes" in err


def _garbage(db):
    db.write_bytes(b"this is not a database at all " * 100)


def _future(db):
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version=99")
    con.close()


def _torn(db):
    data = bytearray(db.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # the second page: a table's b-tree
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _future, _torn], ids=["not-sqlite", "future-schema", "torn-page"])
def test_a_damaged_database_is_reported_moved_aside_and_rebuilt(world, tmp_path, damage):
    runs = plant_all(tmp_path / "runs")
    for folder in runs.values():
        history.record_run(world, folder)
    damage(world)
    damaged = world.read_bytes()
    with pytest.warns(DataWarning, match=f"history database {world}: .*moved aside to .*rebuilt from 3 run folder"):
        rows = recorded(world)
    assert [r["direction"] for r in rows if r["strategy"] == "rag"] == DIRECTIONS["rag"]
    aside = [p for p in world.parent.glob("history.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # kept as it was, not deleted
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert len(recorded(world)) == 6  # the rebuilt file is healthy: no second report


def test_rebuild_without_the_folder_list_scans_the_runs_folders(world, tmp_path):
    """The list beside the database is gone too: finished runs in the `runs/` folder
    given are found; an unfinished one, and one whose config says record none, are not."""
    runs = plant_all(tmp_path / "out")
    plant_run(tmp_path / "out" / "half-done", "half-done", None, "x", {"prompting": 3})
    plant_run(tmp_path / "out" / "private", "private", "2026-11-20T00:00:00+00:00", "y", {"prompting": 3},
              history={"record": "none"})
    history.record_run(world, runs["run-1"])
    _garbage(world)
    (world.parent / "history.sqlite.folders").unlink()
    with pytest.warns(DataWarning, match="rebuilt from 3 run folder"):
        con = history.open_history(world, [tmp_path / "out"])
    assert sorted(r["name"] for r in history_db.read_runs(con)) == ["run-1", "run-2", "run-3"]
    con.close()


def test_another_programs_database_is_an_error_not_moved(world):
    world.parent.mkdir(parents=True)
    con = sqlite3.connect(world)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.close()
    with pytest.raises(BenchError, match="not adaptbench's history"):
        recorded(world)
    assert not list(world.parent.glob("*.damaged-*"))


def _writer(db, folders, barrier):
    barrier.wait()
    for folder in folders:
        history.record_run(db, folder)


def test_concurrent_writers_lose_nothing(world, tmp_path):
    procs, per = 4, 3
    folders = [[plant_run(tmp_path / "runs" / f"w{p}-{i}", f"w{p}-{i}", f"2026-11-{i + 1:02d}T0{p}:00:00+00:00",
                          f"c{p}{i}", {"prompting": 10 + i, "rag": 20 + p}) for i in range(per)] for p in range(procs)]
    shared = plant_run(tmp_path / "runs" / "shared", "shared", "2026-11-30T00:00:00+00:00", "s", {"prompting": 5})
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(procs)
    workers = [ctx.Process(target=_writer, args=(world, [*mine, shared], barrier)) for mine in folders]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * procs
    con = history.open_history(world)
    runs = history_db.read_runs(con)
    results = history_db.read_results(con)
    con.close()
    assert len(runs) == procs * per + 1  # the shared run, recorded by every writer, once
    assert len(results) == procs * per * 2 + 1
    assert {(r["run"], r["strategy"]) for r in results} == {
        *((f"w{p}-{i}", s) for p in range(procs) for i in range(per) for s in ("prompting", "rag")),
        ("shared", "prompting")}


def test_history_settings_are_checked_and_name_the_key(tmp_path):
    from bench.config import make_config

    with pytest.raises(BenchError, match=r"config\.history\.record: expected one of all, baselines, none"):
        make_config(tasks=["rotten-tomatoes"], history={"record": "sometimes"})
    with pytest.raises(BenchError, match=r"config\.history: unknown key\(s\) \['file'\]"):
        make_config(tasks=["rotten-tomatoes"], history={"file": "x"})
    cfg = make_config(tasks=["rotten-tomatoes"], history={"record": "baselines", "path": str(tmp_path / "h.db")})
    assert cfg.history["record"] == "baselines"


def test_env_overrides_the_configured_path(tmp_path, monkeypatch):
    monkeypatch.delenv(history.ENV, raising=False)
    assert history.db_path({"path": str(tmp_path / "team.sqlite")}) == tmp_path / "team.sqlite"
    monkeypatch.setenv(history.ENV, str(tmp_path / "ci.sqlite"))
    assert history.db_path({"path": str(tmp_path / "team.sqlite")}) == tmp_path / "ci.sqlite"


def test_saving_a_baseline_records_it_unless_the_run_says_none(world, tmp_path, capsys):
    runs = plant_all(tmp_path / "runs")
    history.record_run(world, runs["run-1"])
    assert main(["baseline", "save", "nightly", str(runs["run-1"])]) == 0
    assert "recorded in the history" in capsys.readouterr().out
    rows = recorded(world)
    assert {r["baseline"] for r in rows} == {"nightly"} and len(rows) == 2  # the same record, now marked
    history.record_run(world, runs["run-1"])  # recorded again after a resume: still the baseline
    assert {r["baseline"] for r in recorded(world)} == {"nightly"}
    private = plant_run(tmp_path / "runs" / "private", "private", "2026-11-20T00:00:00+00:00", "y",
                        {"prompting": 3}, history={"record": "none"})
    assert main(["baseline", "save", "secret", str(private)]) == 0
    assert "private" not in {r["run"] for r in recorded(world)}


# -- the runner's one call at the end of a finished run -------------------------------------
@pytest.fixture
def fake_world(monkeypatch):
    import bench.backends
    import tasks as tasks_pkg
    from fakes import FakeHandle, toy_classification

    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: FakeHandle(reply="blue"))
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: toy_classification())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")


@pytest.mark.parametrize("record", ["all", "baselines", "none"])
def test_the_runner_records_a_finished_run_as_configured(world, tmp_path, fake_world, record):
    from bench.config import RunConfig
    from bench.runner import Runner

    logged = []
    cfg = RunConfig(tasks=["toy-cls"], strategies=["prompting"], out=str(tmp_path / "runs"), name="r1", limit=3,
                    latency_sample=0, history={"record": record})
    run_dir = Runner(cfg, log=logged.append).run()
    if record != "all":
        assert not world.exists()
        return
    rows = recorded(world)
    assert [(r["run"], r["task"], r["strategy"], r["n"]) for r in rows] == [("r1", rows[0]["task"], "prompting", 3)]
    assert rows[0]["folder"] == str(run_dir.resolve()) and any("recorded in" in str(m) for m in logged)
    Runner(cfg, log=logged.append).run()  # continued (nothing left to do): recorded again, not twice
    assert len(recorded(world)) == 1


def test_a_failing_record_is_logged_and_the_run_kept(world, tmp_path, fake_world):
    from bench.config import RunConfig
    from bench.runner import Runner

    world.mkdir(parents=True)  # a folder where the database file should be: nothing can be recorded
    logged = []
    cfg = RunConfig(tasks=["toy-cls"], strategies=["prompting"], out=str(tmp_path / "runs"), name="r1", limit=3,
                    latency_sample=0)
    run_dir = Runner(cfg, log=logged.append).run()
    assert (run_dir / "rows.jsonl").exists()
    assert any("was not recorded" in str(m) and "bench history --record" in str(m) for m in logged), logged

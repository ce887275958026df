"""The results database's file: schema, connections, damage checks (sqlite3, stdlib).

Rules: every connection uses WAL mode and a long busy timeout, and every write is one
`BEGIN IMMEDIATE` transaction, so concurrent writers (parallel CI jobs, two drivers
sharing a run folder) queue instead of failing and nothing half-written is ever seen.
Opening, checking and (after damage) rebuilding happen under a file lock beside the
database, so two processes never both move a damaged file aside. WAL needs a local
filesystem: keep the database off NFS.

Damage is one of: a file that is not SQLite, a failing `PRAGMA quick_check`, or a
schema version newer than `SCHEMA_VERSION` (written by a newer bench). The file (with
its -wal/-shm) is moved aside to `<name>.damaged-<UTC time>`, never deleted, and
`bench.history` rebuilds it from the run folders.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator

from bench.errors import BenchError

SCHEMA_VERSION = 1
MAGIC = b"SQLite format 3\x00"
BUSY_MS = 120_000
RUN_COLUMNS = ("run_key", "name", "folder", "finished_at", "recorded_at", "config_hash", "git_commit",
               "git_dirty", "baseline")
RESULT_COLUMNS = ("task", "strategy", "model", "metric", "n", "n_seeds", "score", "score_ci_low", "score_ci_high",
                  "latency_p50_ms", "latency_p95_ms", "cost_per_1k_usd", "prepare_cost_usd", "status")
DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY, name TEXT NOT NULL, folder TEXT NOT NULL, finished_at TEXT,
    recorded_at TEXT NOT NULL, config_hash TEXT, git_commit TEXT, git_dirty INTEGER, baseline TEXT);
CREATE TABLE IF NOT EXISTS results (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    task TEXT NOT NULL, strategy TEXT NOT NULL, model TEXT NOT NULL, metric TEXT, n INTEGER, n_seeds INTEGER,
    score REAL, score_ci_low REAL, score_ci_high REAL, latency_p50_ms REAL, latency_p95_ms REAL,
    cost_per_1k_usd REAL, prepare_cost_usd REAL, status TEXT,
    PRIMARY KEY (run_key, task, strategy, model));
CREATE INDEX IF NOT EXISTS results_by_cell ON results (task, strategy, model);
"""


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; writers say BEGIN IMMEDIATE themselves.
    con = sqlite3.connect(str(path), timeout=BUSY_MS / 1000, isolation_level=None)
    con.row_factory = sqlite3.Row
    con.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    con.execute("PRAGMA foreign_keys=ON")
    return con


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """The check-and-repair lock: one process at a time opens a possibly damaged file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def diagnose(path: Path) -> str | None:
    """Why the file is not a usable history database, or None (absent or empty is fine).
    Another program's SQLite file is not ours to move: that is an error to fix."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as fh:
        if fh.read(16) != MAGIC:
            return "not an SQLite database"
    try:
        con = connect(path)
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                return (f"its schema version {version} is newer than this bench's ({SCHEMA_VERSION}); "
                        "it was written by a newer adaptbench")
            check = [row[0] for row in con.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                return "the integrity check failed (" + "; ".join(map(str, check[:3])) + ")"
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"unreadable ({exc})"
    if version == 0 and tables and not tables <= {"runs", "results"}:
        raise BenchError(f"{path} is an SQLite database but not adaptbench's history (tables: "
                         f"{', '.join(sorted(tables))}); point ADAPTBENCH_HISTORY or history.path elsewhere")
    if version == SCHEMA_VERSION and not {"runs", "results"} <= tables:
        return "its tables are missing"
    return None


def create(path: Path) -> sqlite3.Connection:
    """Connect, switch to WAL and create the schema if it is not there (idempotent)."""
    con = connect(path)
    con.execute("PRAGMA journal_mode=WAL")  # a no-op once the file is in WAL mode
    if con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return con  # the schema is there: no write lock taken just to open
    con.execute("BEGIN IMMEDIATE")
    try:
        # One statement at a time: executescript would commit the transaction first.
        for statement in filter(str.strip, DDL.split(";")):
            con.execute(statement)
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        con.close()
        raise
    return con


def move_aside(path: Path) -> Path:
    """Rename the damaged file (and its -wal/-shm companions) beside itself; returns the new name."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        companion = Path(str(path) + suffix)
        if companion.exists():
            os.replace(companion, Path(str(aside) + suffix))
    return aside


def salvage_folders(path: Path) -> list[str]:
    """Run folders named in a damaged file, as far as it can still be read (often not at all)."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return [str(row[0]) for row in con.execute("SELECT folder FROM runs")]
        finally:
            con.close()
    except sqlite3.Error:
        return []


def write_run(con: sqlite3.Connection, run: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """Replace the run's record and its rows in one transaction (re-recording is idempotent).
    A baseline name already recorded is kept when the run is recorded again without one."""
    con.execute("BEGIN IMMEDIATE")
    try:
        old = con.execute("SELECT baseline FROM runs WHERE run_key = ?", (run["run_key"],)).fetchone()
        row = dict(run, baseline=run.get("baseline") or (old["baseline"] if old else None))
        con.execute("DELETE FROM runs WHERE run_key = ?", (run["run_key"],))  # cascades to its results
        con.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
                    [row.get(c) for c in RUN_COLUMNS])
        con.executemany(f"INSERT OR REPLACE INTO results (run_key, {', '.join(RESULT_COLUMNS)}) "
                        f"VALUES (?, {', '.join('?' * len(RESULT_COLUMNS))})",
                        [[run["run_key"], *[r.get(c) for c in RESULT_COLUMNS]] for r in results])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def read_results(con: sqlite3.Connection, task: str | None = None, strategy: str | None = None,
                 model: str | None = None) -> list[dict[str, Any]]:
    """Every recorded summary row with its run's facts, oldest run first per cell."""
    where, args = [], []
    for column, value in (("task", task), ("strategy", strategy), ("model", model)):
        if value is not None:
            where.append(f"r.{column} = ?")
            args.append(value)
    sql = ("SELECT r.*, u.name AS run, u.folder, u.finished_at, u.recorded_at, u.config_hash, u.git_commit, "
           "u.git_dirty, u.baseline FROM results r JOIN runs u ON u.run_key = r.run_key"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY r.task, r.strategy, r.model, u.finished_at, u.recorded_at")
    return [dict(row) for row in con.execute(sql, args)]


def read_runs(con: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(row) for row in con.execute("SELECT * FROM runs ORDER BY finished_at, recorded_at")]

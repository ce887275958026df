"""History for regression benchmarking: every finished run (or only the saved
baselines) in one local results database, for `bench history` and the trend charts
of report.html and compare.html.

Settings (`history:` in the config, checked by `check_settings`):
- `record`: `all` (default: every finished run, and every saved baseline),
  `baselines` (only `bench baseline save`), or `none`.
- `path`: the database file. `$ADAPTBENCH_HISTORY` overrides it (a CI job, a test);
  the default is `history.sqlite` under the cache folder (`bench.paths`).

A run is recorded once per run folder (its resolved path is the key): re-recording
replaces it, so a resumed or re-rendered run never counts twice. Each record holds
the run's name, folder, finish time, config hash (the stored config without name,
out and history), git commit, and one summary row per (task, strategy, model): the
score with its 95% interval, p50/p95 latency, $/1k queries and the prepare cost, as
`reports.summary` computes them from the run folder.

Beside the database, `<db>.folders` lists every folder recorded (one JSON line each),
so that a damaged database can be rebuilt (`open_history`) from: that list, the
folders the damaged file still names, every finished run in their parent folders and
in the `runs/` folders given (default `./runs`) whose config records all runs, and
the saved baselines.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import sqlite3
import warnings
from itertools import groupby
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from bench import history_db as db, jsonl
from bench.errors import BenchError, DataWarning

ENV = "ADAPTBENCH_HISTORY"
FILE = "history.sqlite"
MODES = ("all", "baselines", "none")
KEYS = ("record", "path")
HASH_SKIPS = ("name", "out", "history")  # where a run went says nothing about what it measured
Z95 = 1.959964


def check_settings(value: Any) -> str | None:
    """The problem with a `history:` block as text naming its key, or None."""
    if not isinstance(value, Mapping):
        return f"expected a mapping with keys {list(KEYS)}, got {value!r}"
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        return f"unknown key(s) {unknown}; known: {list(KEYS)}"
    if value.get("record", "all") not in MODES:
        return f"record: expected one of {', '.join(MODES)}, got {value.get('record')!r}"
    path = value.get("path")
    if path is not None and (not isinstance(path, str) or not path.strip()):
        return f"path: expected a file path (text), got {path!r}"
    return None


def db_path(settings: Mapping[str, Any] | None = None) -> Path:
    return locate(settings)[0]


def locate(settings: Mapping[str, Any] | None = None, where: str = "the config") -> tuple[Path, str]:
    """The database file for `settings` (a `history:` block from `where`), and why that
    one: $ADAPTBENCH_HISTORY, else the block's `path`, else the cache folder's."""
    configured = f"history.path in {where}" if settings and settings.get("path") else None
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser(), f"${ENV}" + (f", which overrides {configured}" if configured else "")
    if configured:
        return Path(str(settings["path"])).expanduser(), configured
    from bench.paths import cache_root

    cache = " ($ADAPTBENCH_CACHE)" if os.environ.get("ADAPTBENCH_CACHE") else ""
    return cache_root() / FILE, f"the default: {FILE} in the cache folder{cache}"


def config_settings(path: str | Path) -> dict[str, Any]:
    """The `history:` block of a run config file, as `bench run FILE` records with it
    ({} when it has none); a bad block is an error naming the file and line."""
    from bench import yamlio

    doc = yamlio.load_file(path)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, Mapping):
        raise doc.error("", "the top level must be a mapping of config keys")
    block = {} if data.get("history") is None else data["history"]
    problem = check_settings(block)
    if problem:
        key, sep, rest = problem.partition(": ")
        known = sep and key in KEYS
        raise doc.error(f"history.{key}" if known else "history", rest if known else problem)
    return dict(block)


def stored_settings(run_dir: str | Path) -> dict[str, Any]:
    """The `history:` block of the config stored in a run folder's manifest ({} if none)."""
    try:  # a run folder is untrusted input: bounded nesting, and any damage reads as no settings
        manifest = jsonl.loads_bounded((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    config = manifest.get("config") if isinstance(manifest, dict) else None
    block = config.get("history") if isinstance(config, dict) else None
    return dict(block) if isinstance(block, dict) and check_settings(block) is None else {}


def config_hash(config: Any) -> str | None:
    if not isinstance(config, dict):
        return None
    kept = {k: v for k, v in config.items() if k not in HASH_SKIPS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def read_run(run_dir: str | Path, key: str | None = None, baseline: str | None = None
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's record and summary rows, read from its folder (as every report is)."""
    from reports.frame import load_run
    from reports.summary import summarize

    frames = load_run(run_dir)
    summary = summarize(frames)
    m = frames.manifest
    git = m.get("git") if isinstance(m.get("git"), dict) else {}
    finished = m.get("finished_at")
    if not isinstance(finished, str):
        stamps = [s for s in frames.cells.get("finished_at", []) if isinstance(s, str)]
        finished = max(stamps) if stamps else _dt.datetime.fromtimestamp(
            (frames.root / "cells.jsonl").stat().st_mtime if (frames.root / "cells.jsonl").exists() else 0,
            _dt.timezone.utc).isoformat(timespec="seconds")
    run = {"run_key": key or str(frames.root.resolve()), "name": frames.name, "folder": str(frames.root.resolve()),
           "finished_at": finished, "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "config_hash": config_hash(m.get("config")), "git_commit": git.get("commit"),
           "git_dirty": None if git.get("dirty") is None else int(bool(git.get("dirty"))), "baseline": baseline}
    results = [{c: _clean(r.get(c)) for c in db.RESULT_COLUMNS} for r in summary.to_dict(orient="records")]
    for r in results:
        for c in ("n", "n_seeds"):
            r[c] = None if r[c] is None else int(r[c])
        for c in ("task", "strategy", "model", "metric", "status"):
            r[c] = None if r[c] is None else str(r[c])
    return run, results


def open_history(path: str | Path, runs_dirs: Iterable[str | Path] = ()) -> sqlite3.Connection:
    """A connection to the database, created if absent. A damaged file is reported (a
    DataWarning naming it), moved aside and rebuilt from the run folders first."""
    path = Path(path)
    with db.locked(path):
        why = db.diagnose(path)
        if why is None:
            return db.create(path)
        named = db.salvage_folders(path)
        aside = db.move_aside(path)
        con = db.create(path)
        done, missing = rebuild(con, path, named, runs_dirs)
    gone = f"; {len(missing)} recorded folder(s) no longer exist: {', '.join(missing[:3])}" if missing else ""
    warnings.warn(DataWarning(f"history database {path}: {why}. It was moved aside to {aside} (kept, not "
                              f"deleted) and rebuilt from {done} run folder(s){gone}."), stacklevel=2)
    return con


def record_run(path: str | Path, run_dir: str | Path, key: str | None = None, baseline: str | None = None) -> dict:
    """Record (or replace) one run; returns its record."""
    run, results = read_run(run_dir, key, baseline)
    con = open_history(path)
    try:
        db.write_run(con, run, results)
    finally:
        con.close()
    _journal(Path(path), run)
    return run


def record_finished(settings: Mapping[str, Any], run_dir: str | Path, log: Callable[[str], Any]) -> Path | None:
    """The runner's one call when a run is finished: record it unless `record` says
    otherwise. A failure is logged, never raised: the run folder is complete as it is."""
    if settings.get("record", "all") != "all":
        return None
    path = db_path(settings)
    try:
        record_run(path, run_dir)
    except Exception as exc:  # noqa: BLE001 (the record is a by-product: no failure of it may cost the run)
        log(f"[yellow]history: this run was not recorded in {path}: {exc}. Record it later with "
            f"`bench history --record {run_dir}`.[/]")
        return None
    log(f"[dim]history: recorded in {path}[/]")
    return path


def record_baseline(name: str, run_dir: str | Path) -> Path | None:
    """`bench baseline save`: mark the run as baseline `name` (keyed by the run folder,
    so a run recorded when it finished is the same record), unless `record: none`."""
    settings = stored_settings(run_dir)
    if settings.get("record", "all") == "none":
        return None
    path = db_path(settings)
    record_run(path, run_dir, key=str(Path(run_dir).resolve()), baseline=name)
    return path


def _journal(path: Path, run: dict[str, Any]) -> None:
    line = json.dumps({"key": run["run_key"], "folder": run["folder"], "baseline": run.get("baseline")}) + "\n"
    with open(str(path) + ".folders", "a", encoding="utf-8") as fh:  # one short O_APPEND write: never torn
        fh.write(line)


def _journaled(path: Path) -> list[dict[str, Any]]:
    try:
        lines = Path(str(path) + ".folders").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            entry = jsonl.loads_bounded(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(entry.get("folder"), str):
            out.append(entry)
    return out


def _finished_run(folder: Path) -> bool:
    try:
        manifest = jsonl.loads_bounded((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("finished_at"), str)


def rebuild(con: sqlite3.Connection, path: Path, named: Iterable[str] = (),
            runs_dirs: Iterable[str | Path] = ()) -> tuple[int, list[str]]:
    """Record again every run folder the history knows of (module docstring); returns
    (runs recorded, recorded folders that are gone)."""
    from reports.baselines import list_baselines

    found: dict[str, dict[str, Any]] = {}  # key -> {"folders": [...], "baseline": name}
    for entry in _journaled(path):
        mine = found.setdefault(entry["key"], {"folders": [entry["folder"]], "baseline": None})
        mine["baseline"] = entry.get("baseline") or mine["baseline"]
    for folder in named:
        found.setdefault(str(Path(folder).resolve()), {"folders": [folder], "baseline": None})
    parents = {Path(f).parent for e in found.values() for f in e["folders"]} | {Path(d) for d in runs_dirs}
    for parent in sorted(parents | ({Path("runs")} if not runs_dirs else set())):
        for child in sorted(parent.iterdir()) if parent.is_dir() else []:
            if _finished_run(child) and stored_settings(child).get("record", "all") == "all":
                found.setdefault(str(child.resolve()), {"folders": [str(child)], "baseline": None})
    for b in list_baselines():
        try:
            meta = jsonl.loads_bounded((Path(b["path"]) / "baseline.json").read_text(encoding="utf-8"))
            source = meta.get("source")
        except (OSError, ValueError, AttributeError):
            source = None
        key = str(source or Path(b["path"]).resolve())
        if stored_settings(b["path"]).get("record", "all") != "none":
            mine = found.setdefault(key, {"folders": [key], "baseline": None})
            mine["folders"].append(b["path"])  # the copy, should the run folder be gone
            mine["baseline"] = mine["baseline"] or b["name"]
    done, missing = 0, []
    for key, entry in found.items():
        folder = next((Path(f) for f in entry["folders"] if (Path(f) / "rows.jsonl").exists()), None)
        if folder is None:
            missing.append(entry["folders"][0])
            continue
        try:
            run, results = read_run(folder, key, entry["baseline"])
        except BenchError:
            missing.append(str(folder))
            continue
        db.write_run(con, run, results)
        done += 1
    return done, missing


def direction(prev: Mapping[str, Any] | None, cur: Mapping[str, Any]) -> str:
    """"better"/"worse" when the score changed by more than the two intervals allow
    (the difference's approximate 95% interval, from each run's own, excludes zero),
    "same" otherwise; "–" without a previous scored run or without intervals."""
    values = [r.get(k) if r else None for r in (prev, cur) for k in ("score", "score_ci_low", "score_ci_high")]
    if any(v is None for v in values):
        return "–"
    p, plo, phi, c, clo, chi = (float(v) for v in values)
    margin = Z95 * math.hypot((phi - plo) / (2 * Z95), (chi - clo) / (2 * Z95))
    return "better" if c - p > margin else "worse" if p - c > margin else "same"


def trend(con: sqlite3.Connection, task: str | None = None, strategy: str | None = None,
          model: str | None = None, last: int | None = None) -> list[dict[str, Any]]:
    """Each cell's recorded rows, oldest first, each with `direction` against the cell's
    previous scored run; with `last`, only each cell's last N runs."""
    out: list[dict[str, Any]] = []
    rows = db.read_results(con, task, strategy, model)
    for _, group in groupby(rows, key=lambda r: (r["task"], r["strategy"], r["model"])):
        mine, prev = [], None
        for r in group:
            r["direction"] = direction(prev, r)
            prev = r if r.get("score") is not None else prev
            mine.append(r)
        out += mine[-last:] if last else mine
    return out


def read_trend(path: str | Path | None, **filters: Any) -> list[dict[str, Any]]:
    """`trend` of the database at `path`; [] when there is no such file (reports then
    leave their trend section out)."""
    if path is None or not Path(path).is_file():
        return []
    try:
        con = open_history(path)
        try:
            return trend(con, **filters)
        finally:
            con.close()
    except (BenchError, sqlite3.Error, OSError) as exc:  # a report renders without its trend, never fails on it
        warnings.warn(DataWarning(f"history database {path}: {exc}; the trend charts are left out"), stacklevel=2)
        return []

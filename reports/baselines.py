"""Saved baselines: a run's stored rows kept under a name, for `bench compare NAME RUN`.

`bench baseline save NAME RUN` copies the run's rows.jsonl, cells.jsonl and
manifest.json (not its artifacts: adapters are large and no report reads them) into
`<baselines>/NAME/`, where `<baselines>` is `$ADAPTBENCH_BASELINES` if set, else
`baselines/` under the bench's cache folder (`bench.paths`). Point the variable at a
folder in the repository to commit baselines for CI. Saving under an existing name
replaces it: updating the baseline after an accepted change is the normal workflow.
In `bench compare`, an argument that is an existing folder is a run folder; otherwise
it is looked up as a baseline name.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench.errors import BenchError
from reports.frame import load_run

FILES = ("rows.jsonl", "cells.jsonl", "manifest.json")
META = "baseline.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def baselines_dir() -> Path:
    env = os.environ.get("ADAPTBENCH_BASELINES")
    if env:
        return Path(env).expanduser()
    from bench.paths import cache_root

    return cache_root() / "baselines"


def _check_name(name: str) -> str:
    if not NAME.match(name):
        raise BenchError(f"baseline name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, "
                         "starting with a letter or digit)")
    return name


def save(name: str, run_dir: str | Path) -> Path:
    """Copy the run's stored rows under `name`; returns the baseline's folder."""
    _check_name(name)
    frames = load_run(run_dir)  # a clear error for a missing or non-run folder
    if frames.rows.empty:
        raise BenchError(f"{run_dir} holds no result rows; a baseline needs a finished run")
    root = baselines_dir()
    root.mkdir(parents=True, exist_ok=True)
    # Build beside the target, then swap, so a reader never sees half a baseline.
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    for f in FILES:
        if (frames.root / f).exists():
            shutil.copy2(frames.root / f, tmp / f)
    meta = {"name": name, "run": frames.name, "source": str(Path(run_dir).resolve()),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (tmp / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def list_baselines() -> list[dict[str, str]]:
    root = baselines_dir()
    out = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.is_dir() and NAME.match(path.name) and (path / META).exists():
            try:
                meta = json.loads((path / META).read_text(encoding="utf-8"))
            except ValueError:
                meta = {}
            out.append({"name": path.name, "run": str(meta.get("run", "?")), "saved_at": str(meta.get("saved_at", "?")),
                        "path": str(path)})
    return out


def resolve(spec: str) -> Path:
    """A run folder, or the folder of the baseline saved under that name."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if NAME.match(spec) and (baselines_dir() / spec).is_dir():
        return baselines_dir() / spec
    names = [b["name"] for b in list_baselines()]
    known = f"saved baselines: {', '.join(names)}" if names else "no baselines are saved yet"
    raise BenchError(f"{spec!r} is neither a run folder nor a saved baseline ({known}; "
                     f"save one with `bench baseline save NAME RUN`, stored in {baselines_dir()})")

"""Checksummed lines, all-or-nothing appends, write-then-rename, and a store that
recomputes exactly what was damaged."""
import errno
import json
import os

import pytest

from bench import jsonl
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import RunStore, read_jsonl


def test_checksum_detects_flips_and_truncation_but_reads_legacy_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    jsonl.append(path, [{"cell": "c", "example_id": str(i), "score": 0.5, "text": "é ünïcode"} for i in range(4)])
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1].replace('"score": 0.5', '"score": 1.5')  # valid JSON, wrong content
    lines[3] = lines[3][: len(lines[3]) // 2]  # a torn last line
    path.write_text("".join(lines) + "", encoding="utf-8")
    with open(path, "a") as fh:
        fh.write("\n" + json.dumps({"cell": "legacy", "example_id": "9"}) + "\n")  # written before checksums
    result = jsonl.read(path)
    assert [r["example_id"] for r in result.records] == ["0", "2", "9"]
    assert result.bad == 2 and result.unverified == 1
    assert all("_sha" not in r for r in read_jsonl(path))


def test_append_after_a_torn_tail_starts_a_fresh_line(tmp_path):
    path = tmp_path / "cells.jsonl"
    jsonl.append(path, [{"cell": "a"}])
    with open(path, "a") as fh:
        fh.write('{"_sha": "0000", "cell": "b"')  # a writer killed mid-line
    jsonl.append(path, [{"cell": "c"}])
    result = jsonl.read(path)
    assert [r["cell"] for r in result.records] == ["a", "c"] and result.bad == 1


def test_full_disk_mid_append_rolls_back_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    jsonl.append(path, [{"cell": "a", "example_id": "1"}])
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 40:
            real_write(fd, bytes(data[: len(data) // 2]))  # part of the record reaches the disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(jsonl.os, "write", half_then_full)
    with pytest.raises(jsonl.DiskFullError, match="disk full"):
        jsonl.append(path, [{"cell": "b", "example_id": str(i), "text": "x" * 100} for i in range(3)])
    monkeypatch.undo()
    assert path.read_bytes() == before  # nothing half-written stays behind


def test_crash_between_write_and_rename_keeps_the_old_file(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "run")
    store.write_json("manifest.json", {"version": 1})

    def crash(src, dst):
        raise KeyboardInterrupt  # the process dies after writing the temporary file

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_json("manifest.json", {"version": 2})
    monkeypatch.undo()
    assert json.loads((store.root / "manifest.json").read_text()) == {"version": 1}
    assert sorted(p.name for p in store.root.iterdir()) == ["manifest.json"]  # no temporary left

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(jsonl.DiskFullError):
        store.write_text("manifest.json", "{}")
    monkeypatch.undo()
    assert json.loads((store.root / "manifest.json").read_text()) == {"version": 1}


def _corrupt_line(path, match, how):
    lines = path.read_text().splitlines(keepends=True)
    i = next(k for k, line in enumerate(lines) if match in line)
    lines[i] = how(lines[i])
    path.write_text("".join(lines))


def test_damaged_rows_and_cells_are_recomputed_not_used(tmp_path, fake_world):
    cfg = RunConfig(tasks=["toy-cls"], strategies=["prompting"], out=str(tmp_path), name="r", limit=6,
                    checkpoint_every=2, latency_sample=0, warmup=0, cache=False)
    run_dir = Runner(cfg, log=lambda *_: None).run()
    first = {r["example_id"]: r for r in RunStore(run_dir).read_rows()}
    calls = fake_world["calls"]
    assert len(calls) == 6

    # One row flipped on disk: its cell is run again for that example only.
    _corrupt_line(run_dir / "rows.jsonl", '"example_id": "t18"', lambda s: s.replace('"score": ', '"score": 9'))
    logs = []
    calls.clear()
    Runner(cfg, log=logs.append).run()
    assert len(calls) == 1
    cell = read_jsonl(run_dir / "cells.jsonl")[-1]
    assert (cell["computed_n"], cell["resumed_n"]) == (1, 5)
    assert any("rows.jsonl: 1 damaged line" in str(m) for m in logs)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["damaged_lines"] == {"rows.jsonl": 1}
    rows = {r["example_id"]: r for r in RunStore(run_dir).read_rows()}
    assert {k: (r["output"], r["score"]) for k, r in rows.items()} == \
        {k: (r["output"], r["score"]) for k, r in first.items()}

    # The cell record torn in half: the cell runs again, from its stored rows alone.
    last = (run_dir / "cells.jsonl").read_text().splitlines()[-1]
    (run_dir / "cells.jsonl").write_text(last[: len(last) // 2])  # the cell's only record, torn
    calls.clear()
    Runner(cfg, log=lambda *_: None).run()
    assert calls == []
    assert read_jsonl(run_dir / "cells.jsonl")[-1]["resumed_n"] == 6

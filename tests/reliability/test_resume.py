"""Resume per example: a crash costs only the unfinished chunk; `bench run --resume RUN`
continues with the stored config; the result equals an uninterrupted run's."""
import json

import pytest

import bench.cli
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import RunStore, read_jsonl
from conftest import CountingHandle


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after it runs (BaseException, so no handler records it)."""


def _results(run_dir):
    return {(r["cell"], r["example_id"]): (r["output"], r["score"]) for r in RunStore(run_dir).read_rows()}


def _config(tmp_path, name):
    return RunConfig(tasks=["toy-cls", "toy-qa"], strategies=["prompting"], out=str(tmp_path), name=name,
                     limit=8, checkpoint_every=3, latency_sample=0, warmup=0, cache=False)


def test_crash_mid_cell_recomputes_only_the_unfinished_chunk(tmp_path, fake_world):
    whole = Runner(_config(tmp_path, "whole"), log=lambda *_: None).run()

    calls = fake_world["calls"]
    batches = []

    class Crashing(CountingHandle):
        def score_choices(self, prompts, choices, batch_size=16, progress=None):
            batches.append(len(prompts))
            if len(batches) == 3:  # chunks of 3: examples 0-5 are checkpointed, 6-7 are not
                raise Crash
            return super().score_choices(prompts, choices, batch_size, progress)

    fake_world["handle"] = lambda: Crashing(calls=calls)
    cfg = _config(tmp_path, "crashed")
    with pytest.raises(Crash):
        Runner(cfg, log=lambda *_: None).run()
    assert len(RunStore(cfg.run_dir).read_partial("toy-sentiment|prompting|smollm2-135m|seed0")) == 6
    assert read_jsonl(cfg.run_dir / "cells.jsonl") == []

    fake_world["handle"] = lambda: CountingHandle(calls=calls)
    calls.clear()
    Runner(cfg, log=lambda *_: None).run()
    cells = {c["cell"]: c for c in read_jsonl(cfg.run_dir / "cells.jsonl")}
    cls = cells["toy-sentiment|prompting|smollm2-135m|seed0"]
    assert (cls["resumed_n"], cls["computed_n"]) == (6, 2)
    assert cells["toy-facts|prompting|smollm2-135m|seed0"]["computed_n"] == 2
    assert len(calls) == 2 + 2  # the unfinished chunk and the cell never started
    assert _results(cfg.run_dir) == {k: v for k, v in _results(whole).items()}
    assert not RunStore(cfg.run_dir).partial_path("toy-sentiment|prompting|smollm2-135m|seed0").exists()


def test_cli_resume_uses_the_stored_config(tmp_path, fake_world, capsys):
    cfg = _config(tmp_path, "r")
    Runner(cfg, log=lambda *_: None).run()
    rows_before = _results(cfg.run_dir)
    # Drop the second cell, as if the run had died before it.
    cells = (cfg.run_dir / "cells.jsonl").read_text().splitlines(keepends=True)
    (cfg.run_dir / "cells.jsonl").write_text(cells[0])
    fake_world["calls"].clear()
    assert bench.cli.main(["run", "--resume", str(cfg.run_dir)]) == 0
    assert len(fake_world["calls"]) == 0  # the dropped cell's rows were all stored: nothing to predict
    assert len(read_jsonl(cfg.run_dir / "cells.jsonl")) == 2
    assert _results(cfg.run_dir) == rows_before
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert manifest["config"]["limit"] == 8 and manifest["config"]["checkpoint_every"] == 3

    assert bench.cli.main(["run", "--resume", str(cfg.run_dir), "--limit", "3"]) == 2
    assert bench.cli.main(["run", "--resume", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "drop limit" in err and "no run folder" in err and "Traceback" not in err

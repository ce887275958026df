"""The content-addressed cache: predictions and adapters reused only when every input
matches, never failed or empty work, cached timings kept, list/prune/--no-cache."""
import dataclasses
import json
import os
import time

import pytest

import bench.cli
import bench.backends
from bench import cache as cache_mod
from bench.cells import prediction_key, strategy_config
from bench.config import RunConfig
from bench.lm import Generation
from bench.runner import Runner
from bench.store import RunStore, read_jsonl
from conftest import CountingHandle
from fakes import HashingEmbedder, toy_classification, toy_qa
from strategies import definition


class SlowHandle(CountingHandle):
    """Reports 0.25 s per query and really takes a little time, so a cache hit's time
    could not pass for the original's."""

    def generate(self, prompts, max_new_tokens=32, batch_size=8, progress=None):
        self.calls.extend(prompts)
        time.sleep(0.02)
        return [Generation(self.reply, 5, 1, 0.25) for _ in prompts]


def _cfg(tmp_path, name, **kw):
    base = dict(tasks=["toy-qa"], strategies=["prompting"], out=str(tmp_path), name=name, limit=8,
                checkpoint_every=1, latency_sample=0, warmup=0)
    return RunConfig(**{**base, **kw})


def test_cached_predictions_keep_their_original_latency(tmp_path, fake_world):
    calls = fake_world["calls"]
    fake_world["handle"] = lambda: SlowHandle(calls=calls)
    first = Runner(_cfg(tmp_path, "a"), log=lambda *_: None).run()
    assert len(calls) == 2
    calls.clear()
    second = Runner(_cfg(tmp_path, "b"), log=lambda *_: None).run()
    assert calls == []  # served from the prediction cache
    rows_a, rows_b = RunStore(first).read_rows(), RunStore(second).read_rows()
    assert [r["cached"] for r in rows_a] == [False, False] and [r["cached"] for r in rows_b] == [True, True]
    assert [r["latency_s"] for r in rows_b] == [0.25, 0.25]  # measured when computed, not at the hit
    cell_a, cell_b = read_jsonl(first / "cells.jsonl")[0], read_jsonl(second / "cells.jsonl")[0]
    assert cell_a["predict_s"] >= 0.04
    assert cell_b["predict_s"] == pytest.approx(cell_a["predict_s"], rel=1e-6)
    assert (cell_b["cached_n"], cell_b["computed_n"]) == (2, 0)
    assert [r["output"] for r in rows_b] == [r["output"] for r in rows_a]


def test_a_cell_served_whole_from_the_cache_is_not_warmed_up(tmp_path, fake_world):
    calls = fake_world["calls"]
    fake_world["handle"] = lambda: SlowHandle(calls=calls)
    Runner(_cfg(tmp_path, "a", warmup=2), log=lambda *_: None).run()
    assert len(calls) == 4  # 2 warm-up queries, then the 2 test examples
    calls.clear()
    Runner(_cfg(tmp_path, "b", warmup=2), log=lambda *_: None).run()
    assert calls == []  # nothing to compute, so nothing to warm up for
    (path,) = list(cache_mod.cache_dir("predictions").iterdir())
    path.write_text(path.read_text().splitlines(keepends=True)[0])  # one prediction left in the cache
    Runner(_cfg(tmp_path, "c", warmup=2), log=lambda *_: None).run()
    assert len(calls) == 3  # warmed up again, as one example is computed


def test_a_damaged_prediction_cache_line_is_recomputed(tmp_path, fake_world):
    Runner(_cfg(tmp_path, "a"), log=lambda *_: None).run()
    (path,) = list(cache_mod.cache_dir("predictions").iterdir())
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0].replace('"blue"', '"gray"') + lines[1])  # valid JSON, wrong answer
    run_dir = Runner(_cfg(tmp_path, "b"), log=lambda *_: None).run()
    cell = read_jsonl(run_dir / "cells.jsonl")[0]
    assert (cell["cached_n"], cell["computed_n"]) == (1, 1)
    assert "1 damaged line(s)" in cell["notes"][-1]
    assert {r["output"] for r in RunStore(run_dir).read_rows()} == {"blue"}


def test_empty_outputs_are_never_cached_and_no_cache_reads_nothing(tmp_path, fake_world):
    calls = fake_world["calls"]
    fake_world["handle"] = lambda: CountingHandle(reply="", calls=calls)
    Runner(_cfg(tmp_path, "empty"), log=lambda *_: None).run()
    Runner(_cfg(tmp_path, "empty2"), log=lambda *_: None).run()
    assert len(calls) == 4  # nothing to reuse: empty answers are computed again
    fake_world["handle"] = lambda: CountingHandle(reply="blue", calls=calls)
    calls.clear()
    Runner(_cfg(tmp_path, "n1", cache=False), log=lambda *_: None).run()
    Runner(_cfg(tmp_path, "n2", cache=False), log=lambda *_: None).run()
    assert len(calls) == 4
    assert not list(cache_mod.cache_dir("predictions").iterdir())


def test_prediction_key_changes_with_every_input(fake_handle):
    from strategies.prompting import build

    strategy = build({})
    task = toy_qa()
    args = dict(definition=definition("prompting"), config=strategy_config(strategy, {}),
                handle=fake_handle, task_fingerprint=task.fingerprint(), seed=0, train_limit=100, batch_size=8)
    base = prediction_key(**args)
    other_task = dataclasses.replace(task, test=task.test[:1])
    changes = [dict(handle=dataclasses.replace(fake_handle, fingerprint="fake:1")),
               dict(handle=dataclasses.replace(fake_handle, device="cuda")),
               dict(task_fingerprint=other_task.fingerprint()),
               dict(config=strategy_config(build({"shots": 2}), {})), dict(seed=1), dict(train_limit=50),
               dict(batch_size=4),  # another strategy's code:
               dict(definition=dataclasses.replace(definition("prompting"), code=("strategies.rag",)))]
    keys = {prediction_key(**{**args, **c}) for c in changes}
    assert base not in keys and len(keys) == len(changes)
    assert prediction_key(**args) == base


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    mod = tmp_path / "mymod_for_cache.py"
    mod.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    one = cache_mod.code_version("mymod_for_cache")
    cache_mod.code_version.cache_clear()
    mod.write_text("X = 2\n")
    assert cache_mod.code_version("mymod_for_cache") != one


def test_rag_index_key_covers_embedder_chunking_and_corpus():
    from strategies.rag import RagConfig, _cache_key

    cfg = RagConfig()
    base = _cache_key("corpus", "digest-a", HashingEmbedder(64), cfg)
    assert _cache_key("corpus", "digest-b", HashingEmbedder(64), cfg) != base
    assert _cache_key("corpus", "digest-a", HashingEmbedder(32), cfg) != base
    assert _cache_key("corpus", "digest-a", HashingEmbedder(64), RagConfig(chunk_tokens=100)) != base
    assert _cache_key("corpus", "digest-a", HashingEmbedder(64), RagConfig(chunk_overlap=10)) != base
    assert _cache_key("corpus", "digest-a", HashingEmbedder(64), RagConfig(index="hnsw")) != base


LORA = {"name": "lora", "max_steps": 1, "batch_size": 4, "max_val_examples": 0, "max_length": 64}


def test_adapter_cache_serves_training_with_its_original_time(tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: tiny)
    import tasks as tasks_pkg

    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: toy_classification())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    cfg = dict(tasks=["toy-cls"], strategies=[LORA], limit=3)
    first = Runner(_cfg(tmp_path, "l1", **cfg), log=lambda *_: None).run()
    for path in cache_mod.cache_dir("predictions").iterdir():
        path.unlink()  # predict again, through the restored adapter
    # Another prediction batch is another prediction context, but the same adapter.
    second = Runner(_cfg(tmp_path, "l2", batch_size=3, **cfg), log=lambda *_: None).run()
    a, b = read_jsonl(first / "cells.jsonl")[0], read_jsonl(second / "cells.jsonl")[0]
    assert a["status"] == b["status"] == "ok"
    assert (a["prepare_cached"], b["prepare_cached"]) == (False, True)
    assert b["prepare_s"] == pytest.approx(a["prepare_s"])  # the training time, not the load time
    assert b["info"]["loss_curve"] == a["info"]["loss_curve"]
    assert any((second / "artifacts").rglob("adapter_model.safetensors"))
    events = [e["event"] for e in read_jsonl(second / "events.jsonl")]
    assert "prepare" not in events  # nothing trained
    # The restored adapter answers as the trained one did.
    assert b["computed_n"] == 3
    assert [r["output"] for r in RunStore(second).read_rows()] == [r["output"] for r in RunStore(first).read_rows()]

    # A damaged cached adapter is detected by its sha256 and trained again, never loaded.
    (entry,) = list(cache_mod.cache_dir("prepared").iterdir())
    weights = entry / "data" / "weights" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    third = Runner(_cfg(tmp_path, "l3", **cfg), log=lambda *_: None).run()
    assert read_jsonl(third / "cells.jsonl")[0]["prepare_cached"] is False


def test_adapter_key_covers_model_task_config_seed_and_limit():
    from bench.prepared import prepare_key

    lora = definition("lora")
    args = (lora, {"r": 8}, "model:a", "task:a", 0, 100, "cpu")
    base = prepare_key(*args)
    other_code = dataclasses.replace(lora, code=(*lora.code, "strategies.rag"))
    variants = [(lora, {"r": 4}, *args[2:]), (*args[:2], "model:b", *args[3:]), (*args[:3], "task:b", *args[4:]),
                (*args[:4], 1, *args[5:]), (*args[:5], 50, "cpu"), (*args[:6], "cuda"), (other_code, *args[1:]),
                (*args, ("bench.embedder",))]
    keys = {prepare_key(*v) for v in variants}
    assert base not in keys and len(keys) == len(variants)
    assert prepare_key(definition("prompting"), *args[1:]) is None  # cheap prepares are not cached


def test_cache_list_and_prune(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path))
    old, new = tmp_path / "predictions" / "old.jsonl", tmp_path / "prepared" / "new"
    old.parent.mkdir(parents=True)
    old.write_text("x" * 1000)
    new.mkdir(parents=True)
    (new / "meta.json").write_text("{}")
    os.utime(old, (time.time() - 10 * 86400,) * 2)
    assert bench.cli.main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "predictions       1 entries" in out and "prepared          1 entries" in out
    assert bench.cli.main(["cache", "prune"]) == 2  # says what to do instead of guessing
    assert bench.cli.main(["cache", "prune", "--older-than", "7"]) == 0
    assert not old.exists() and new.exists()
    assert bench.cli.main(["cache", "prune", "--all"]) == 0
    assert not new.exists()


def test_no_cache_flag_reads_and_writes_nothing(tmp_path, fake_world):
    for name in ("c1", "c2"):
        assert bench.cli.main(["run", "--tasks", "toy-qa", "--strategies", "prompting", "--out", str(tmp_path),
                               "--name", name, "--limit", "2", "--no-cache"]) == 0
    cell = read_jsonl(tmp_path / "c2" / "cells.jsonl")[0]
    assert (cell["computed_n"], cell["cached_n"]) == (2, 0)  # the second run computed everything again
    assert not list(cache_mod.cache_dir("predictions").iterdir())
    manifest = json.loads((tmp_path / "c2" / "manifest.json").read_text())
    assert manifest["config"]["cache"] is False and manifest["config"]["strategy_options"] == {}

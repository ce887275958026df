"""Helpers of the executor tests: a real small grid (tiny safetensors LM, two task
specs) that Ray workers can load by path, the deterministic content of a run, and a
fake world for in-process runs (a fixture: import it by name; no conftest here, since
reliability tests import their own `conftest` module by that name)."""
import json
from pathlib import Path

import pytest

import bench.backends
import tasks as tasks_pkg
from fakes import FakeHandle, toy_classification, toy_qa

TIMINGS = {"latency_s", "first_token_s", "retrieval_s", "wall_s"}
CELL_FACTS = ("cell", "task", "strategy", "model", "seed", "status", "error", "metric", "n", "computed_n",
              "cached_n", "truncated_n", "pred_digest", "prepare_cached", "predict_oom_retries")
INFO_FACTS = ("final_train_loss", "adapter_sha256", "weights_sha256", "index_sha256", "demo_ids", "n_chunks",
              "steps")


def outputs(run_dir):
    """The deterministic content of a run folder: rows less timings, cell facts."""
    from bench.store import RunStore

    store = RunStore(run_dir)
    rows = {(r["cell"], r["example_id"]): {k: v for k, v in r.items() if k not in TIMINGS | {"_sha"}}
            for r in store.read_rows()}
    cells = {}
    for c in store.read_cells():
        facts = {k: c.get(k) for k in CELL_FACTS}
        facts["info"] = {k: (c.get("info") or {}).get(k) for k in INFO_FACTS}
        facts["probes"] = sorted(k for k, v in (c.get("latency") or {}).items() if isinstance(v, dict))
        cells[c["cell"]] = facts
    return rows, cells


def _reliability_helpers():
    """save_tiny_lm and write_task from tests/reliability/conftest.py (loaded by path:
    every conftest module is named `conftest`)."""
    import importlib.util

    path = Path(__file__).parents[1] / "reliability" / "conftest.py"
    spec = importlib.util.spec_from_file_location("reliability_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.save_tiny_lm, module.write_task


def small_grid(folder: Path, limit: int = 6, qa_tokens: int = 4, strategies=None, **extra) -> dict:
    """A real grid on a tiny random LM: a classification and a QA spec, prompting, RAG
    (few-shot retrieval, the embedded MiniLM) and a 2-step LoRA. Returns the config."""
    save_tiny_lm, write_task = _reliability_helpers()
    lm = folder / "tiny-lm"
    if not lm.exists():
        save_tiny_lm(lm)
    cls = write_task(folder / "data", n=30, name="mini")
    facts = [("Zorblat", "blue"), ("Quenix", "green"), ("Vartop", "red"), ("Mildrun", "yellow"), ("Trosk", "black")]
    rows = [{"id": f"q{i}", "input": f"What colour is the {n} gadget, version {i}?", "target": c}
            for i in range(40) for n, c in [facts[i % 5]]]
    (folder / "data/qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "data/qa.yaml").write_text(f"name: gadgets\nkind: qa\ntrain: qa.jsonl\nmax_new_tokens: {qa_tokens}\n"
                                         "split: {ratios: [0.5, 0.1, 0.4], seed: 0}\n")
    cfg = {"tasks": [str(cls), str(folder / "data/qa.yaml")], "models": [str(lm)], "device": "cpu",
           "limit": limit, "train_limit": 12, "checkpoint_every": 2, "latency_sample": 2, "warmup": 1,
           "cache": False, "strategy_options": {"rag": {"cache": False}},
           "strategies": strategies or ["prompting", {"name": "rag", "demos_k": 2},
                                        {"name": "lora", "max_steps": 2, "batch_size": 4, "max_val_examples": 4,
                                         "max_length": 96}]}
    cfg.update(extra)
    return cfg


@pytest.fixture
def fake_world(monkeypatch):
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: FakeHandle(reply="blue"))
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: {"toy-cls": toy_classification,
                                                                      "toy-qa": toy_qa}[name]())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-qa", "fakes:toy_qa")

"""Shared pieces of the reliability suite: a fake world for the runner (no model, no
assets), a tiny task written as YAML + JSONL, and a tiny safetensors LM folder."""
import json
from pathlib import Path

import pytest

import bench.backends
import tasks as tasks_pkg
from fakes import FakeHandle, toy_classification, toy_qa


class CountingHandle(FakeHandle):
    """A FakeHandle that counts the queries it answers (frozen dataclass: a list holds the count)."""

    def __init__(self, reply: str = "blue", calls: list | None = None, **kw):
        super().__init__(reply=reply, **kw)
        object.__setattr__(self, "calls", calls if calls is not None else [])

    def generate(self, prompts, max_new_tokens=32, batch_size=8, progress=None):
        self.calls.extend(prompts)
        return super().generate(prompts, max_new_tokens, batch_size, progress)

    def score_choices(self, prompts, choices, batch_size=16, progress=None):
        self.calls.extend(prompts)
        return super().score_choices(prompts, choices, batch_size, progress)


@pytest.fixture
def fake_world(monkeypatch):
    """load_lm -> a CountingHandle (its `calls` list is returned); toy tasks by name."""
    calls: list = []
    state = {"handle": lambda: CountingHandle(calls=calls)}
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: state["handle"]())
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: {"toy-cls": toy_classification,
                                                                      "toy-qa": toy_qa}[name]())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-qa", "fakes:toy_qa")
    state["calls"] = calls
    return state


def write_task(folder: Path, n: int = 30, name: str = "mini", long_input: bool = False) -> Path:
    """A classification task spec + JSONL: n examples, two labels, ids e0..e{n-1}."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = "good" if i % 2 == 0 else "bad"
        text = f"{'great fine' if label == 'good' else 'awful poor'} movie review number {i}"
        if long_input:
            text = ("filler words " * 400) + text
        rows.append({"id": f"e{i}", "input": text, "target": label})
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = folder / f"{name}.yaml"
    spec.write_text(f"name: {name}\nkind: classification\nlabels: [good, bad]\ntrain: {name}.jsonl\n"
                    "split: {ratios: [0.5, 0.1, 0.4], seed: 0}\n")
    return spec


def save_tiny_lm(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny Llama + BPE tokenizer with a chat template, as safetensors."""
    from fakes import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder

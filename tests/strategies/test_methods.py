"""The weight-changing methods beside LoRA, on the tiny in-process model: each trains
through the one shared path, changes the model's answers, reloads to the same answers,
leaves the shared weights alone, and its cache key follows an edit to any module it
calls. QLoRA: a clear CUDA error on a CPU, and a real run on a GPU."""
import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from bench import cache
from bench.backends import shared_adapters
from bench.errors import BenchError
from bench.prepared import prepare_key
from fakes import toy_classification
from strategies import STRATEGIES, definition
from strategies.base import Budget

METHODS = ["lora", "dora", "ia3", "prompt-tuning", "full-ft"]
# Big steps, so the tiny model visibly moves in a few of them.
FAST = {"lora": {"learning_rate": 0.05}, "dora": {"learning_rate": 0.05}, "ia3": {"learning_rate": 0.2},
        "prompt-tuning": {"learning_rate": 0.3, "num_virtual_tokens": 4}, "full-ft": {"learning_rate": 3e-3}}
COMMON = {"batch_size": 4, "epochs": 3, "eval_every": 100, "patience": 100, "probe_examples": 4}


def label_logprobs(lm, task):
    from strategies.prompts import build_prompt, reserve_tokens

    prompts = [build_prompt(lm, task, ex.input, reserve=reserve_tokens(task)) for ex in task.test]
    return torch.tensor([s.logprobs for s in lm.score_choices(prompts, list(task.labels))])


@pytest.mark.parametrize("name", METHODS)
def test_method_trains_changes_answers_and_reloads(name, tiny, tmp_path):
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    task = toy_classification()
    sdef = definition(name)
    strategy = sdef.build({**COMMON, **FAST[name]})
    art = strategy.prepare(task, tiny, Budget(seed=0, workdir=tmp_path))
    info = art.info
    losses = [c["train_loss"] for c in info["loss_curve"] if c["train_loss"] is not None]
    assert info["steps"] == 6 and losses[-1] < losses[0]
    assert 0 < info["trainable_params"] <= info["total_params"]
    assert (info["trainable_params"] == info["total_params"]) == (name == "full-ft")
    assert info["tokens_per_s"] > 0 and info["train_peak_memory_mb"] > 0
    assert info["saved_bytes"] == sum(p.stat().st_size for p in Path(info["saved_path"]).rglob("*") if p.is_file())
    assert "forgetting" in info and "forgetting_lm_loss" in info

    base_lp, adapted_lp = label_logprobs(tiny, task), label_logprobs(art.state["model"], task)
    assert not torch.allclose(base_lp, adapted_lp, atol=1e-3)  # the answers' scores moved
    base = shared_adapters.clean_copy(tiny.model)  # the shared model without attached adapters
    assert all(torch.equal(p, before[n]) for n, p in base.named_parameters())  # shared weights untouched

    folder = tmp_path / "store"
    folder.mkdir()
    facts = sdef.artifacts.save(art, folder)
    again = sdef.artifacts.load(folder, task, tiny, facts)
    torch.testing.assert_close(label_logprobs(again.state["model"], task), adapted_lp, rtol=1e-4, atol=1e-4)
    assert again.state["model"].fingerprint == art.state["model"].fingerprint


def test_full_ft_saves_a_full_checkpoint_and_adapters_are_small(tiny, tmp_path):
    task = toy_classification()
    sizes = {}
    for name in ("lora", "full-ft"):
        art = definition(name).build({**COMMON, "max_steps": 1, "forgetting": False}).prepare(
            task, tiny, Budget(seed=0, workdir=tmp_path / name))
        sizes[name] = art.info["saved_bytes"]
    params = sum(p.numel() for p in tiny.model.parameters())
    assert sizes["full-ft"] >= params * 4 * 0.9 > sizes["lora"] > 0  # float32 checkpoint vs a few matrices


def _strategy_imports(module: str) -> set[str]:
    """The strategies.* modules `module` imports (not the protocol or the registry)."""
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "strategies":
            found |= {f"strategies.{a.name}" for a in node.names if a.name not in ("STRATEGIES", "definition")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("strategies."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("strategies.")}
    return found - {"strategies.base"}


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_module_a_strategy_calls_is_in_its_keys(name):
    code = set(definition(name).code)
    for module in code:
        missing = _strategy_imports(module) - code
        assert not missing, f"{name}: {module} imports {sorted(missing)}, which its StrategyDef.code leaves out"


@pytest.mark.parametrize("name", ["dora", "ia3", "prompt-tuning", "full-ft", "qlora"])
def test_editing_a_module_it_calls_changes_its_cache_key(name, tmp_path, monkeypatch):
    sdef = definition(name)
    args = ({"r": 8}, "model:a", "task:a", 0, 100, "cpu")
    key = prepare_key(sdef, *args)
    real_find_spec = importlib.util.find_spec
    for module in sdef.code:
        edited = tmp_path / f"{module}.py"
        edited.write_text(Path(real_find_spec(module).origin).read_text() + "\n# an edit\n")

        def find_spec(n, *a, _module=module, _edited=edited):
            return _Spec(str(_edited)) if n == _module else real_find_spec(n, *a)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        cache.code_version.cache_clear()
        assert prepare_key(sdef, *args) != key, module
        monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)
        cache.code_version.cache_clear()
    assert prepare_key(sdef, *args) == key


class _Spec:
    def __init__(self, origin: str) -> None:
        self.origin = origin


def test_qlora_without_cuda_is_a_clear_error_before_anything_loads():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the GPU test below runs qlora")
    with pytest.raises(BenchError, match="qlora needs a CUDA GPU.*Use lora on a CPU"):
        definition("qlora").build({})


@pytest.mark.gpu
def test_qlora_trains_on_cuda_over_a_4bit_base(tmp_path):
    pytest.importorskip("bitsandbytes")
    from fakes import tiny_handle

    handle = tiny_handle(seed=3)
    handle = dataclasses.replace(handle, model=handle.model.to("cuda", torch.bfloat16), device="cuda")
    task = toy_classification()
    sdef = definition("qlora")
    strategy = sdef.build({**COMMON, "learning_rate": 0.05})
    art = strategy.prepare(task, handle, Budget(seed=0, workdir=tmp_path))
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in art.state["model"].torch_model.modules())
    assert art.info["trainable_params"] < art.info["total_params"] and art.info["saved_bytes"] > 0
    assert len(strategy.predict(art, task.test)) == len(task.test)
    folder = tmp_path / "store"
    folder.mkdir()
    again = sdef.artifacts.load(folder, task, handle, sdef.artifacts.save(art, folder))
    torch.testing.assert_close(label_logprobs(again.state["model"], task), label_logprobs(art.state["model"], task),
                               rtol=1e-3, atol=1e-3)


class ServingLM:
    """An adapter-serving backend (a vLLM server with LoRA enabled): trains on the local
    twin, serves the saved adapter by name."""

    def __init__(self, twin) -> None:
        self.twin, self.name, self.served = twin, "served", []

    @property
    def capabilities(self):
        from bench.lm import Capabilities

        return Capabilities(trainable=False, adapters=True)

    def trainable_base(self):
        return self.twin

    def with_served_adapter(self, folder, name):
        self.served.append((Path(folder), name))
        return self.twin  # stands in for the server's view of the adapter


@pytest.mark.parametrize("name, servable", [("lora", True), ("ia3", False)])
def test_adapter_serving_backends_get_lora_adapters_and_refuse_the_rest(name, servable, tiny, tmp_path):
    server = ServingLM(tiny)
    strategy = definition(name).build({**COMMON, "max_steps": 1, "forgetting": False})
    if not servable:
        with pytest.raises(BenchError, match=f"{name}: model 'served' serves LoRA adapters only"):
            strategy.prepare(toy_classification(), server, Budget(seed=0, workdir=tmp_path))
        return
    art = strategy.prepare(toy_classification(), server, Budget(seed=0, workdir=tmp_path))
    ((folder, served_name),) = server.served
    assert (folder / "adapter_model.safetensors").is_file() and served_name.startswith("lora-")
    assert not list(strategy.latency_variants(art))  # nothing to merge on a server

"""Model specs, the backend registry and the grid check: known before anything loads."""
import re
from pathlib import Path

import pytest

import bench.backends
import tasks as tasks_pkg
from bench.backends import ModelSpec, capabilities_of, check_grid
from bench.config import RunConfig
from bench.errors import BenchError
from bench.runner import Runner
from fakes import toy_classification


def test_a_string_is_an_hf_spec_and_keeps_its_label():
    spec = ModelSpec.parse("smollm2-135m", "config.models[0]")
    assert (spec.backend, spec.label, spec.options.model) == ("hf", "smollm2-135m", "smollm2-135m")
    assert capabilities_of(spec).trainable
    assert spec.to_dict() == {"backend": "hf", "label": "smollm2-135m", "model": "smollm2-135m"}


def test_short_form_and_mapping_give_the_same_openai_spec():
    short = ModelSpec.parse("openai:smol@http://127.0.0.1:8000/v1/", "--model")
    full = ModelSpec.parse({"backend": "openai", "model": "smol", "base_url": "http://127.0.0.1:8000/v1"}, "m")
    assert short == full and short.label == "openai:smol"
    caps = capabilities_of(short)
    assert not caps.trainable and not caps.adapters
    assert capabilities_of(ModelSpec.parse({"backend": "openai", "model": "s", "adapters": True}, "m")).adapters
    assert ModelSpec.parse({"backend": "openai", "model": "s", "label": "mine"}, "m").label == "mine"


def test_unknown_keys_backends_and_bad_values_name_the_entry():
    with pytest.raises(BenchError, match=r"config.models\[1\] \(openai backend\): unknown option\(s\) bse_url "
                                         r"\(did you mean base_url\?\)"):
        RunConfig(models=["smollm2-135m", {"backend": "openai", "model": "x", "bse_url": "http://h/v1"}])
    with pytest.raises(BenchError, match=r"config.models\[0\].*unknown model backend 'opanai'.*openai"):
        RunConfig(models=[{"backend": "opanai", "model": "x"}])
    with pytest.raises(BenchError, match=r"base_url must start with http"):
        ModelSpec.parse({"backend": "openai", "model": "x", "base_url": "127.0.0.1:8000"}, "m")
    with pytest.raises(BenchError, match=r"model label\(s\) \['openai:x'\] appear twice"):
        RunConfig(models=["openai:x", {"backend": "openai", "model": "x", "base_url": "http://other:1/v1"}])


def test_a_key_pasted_as_api_key_env_is_refused_without_echoing_it():
    key = "sk-live-0123456789abcdef"
    with pytest.raises(BenchError) as err:
        ModelSpec.parse({"backend": "openai", "model": "x", "api_key_env": key}, "m")
    assert key not in str(err.value) and "environment variable" in str(err.value)


def test_check_grid_names_the_strategy_and_the_model():
    hosted = ModelSpec.parse("openai:gpt-4o-mini@https://api.example.com/v1", "m")
    local = ModelSpec.parse("smollm2-135m", "m")
    served = ModelSpec.parse({"backend": "openai", "model": "smol", "adapters": True, "label": "vllm-lora"}, "m")
    check_grid({"prompting": set(), "lora": {"trainable"}}, [local, served])  # both can train
    with pytest.raises(BenchError, match=r"strategy 'lora' needs trainable, which model 'openai:gpt-4o-mini' "
                                         r"\(openai backend\) does not have"):
        check_grid({"prompting": set(), "lora": {"trainable"}}, [local, hosted])
    check_grid({"rag": {"prompt_logprobs"}}, [hosted])  # has a fallback: never a config error


def test_runner_refuses_an_impossible_grid_before_loading_anything(tmp_path, monkeypatch):
    loads = []
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: loads.append(spec))
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: toy_classification())
    cfg = RunConfig(tasks=["toy-cls"], strategies=["prompting", "lora"], out=str(tmp_path), name="r",
                    models=["openai:gpt-4o-mini@http://127.0.0.1:9/v1"])
    with pytest.raises(BenchError, match="strategy 'lora' needs trainable.*'openai:gpt-4o-mini'"):
        Runner(cfg, log=lambda *_: None).run()
    assert loads == [] and not (tmp_path / "r" / "cells.jsonl").exists()


WEIGHTS = r"(?<!tasks)\.(model|tokenizer)\b(?!\w)"  # a backend's internals (tasks.model is a module)


def test_strategies_talk_to_the_lm_protocol_only():
    """No strategy imports transformers or reaches into a backend's `.model`/`.tokenizer`."""
    root = Path(__file__).resolve().parents[2] / "strategies"
    offenders = []
    for path in sorted(root.glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"\b(import|from)\s+transformers\b", code) or re.search(WEIGHTS, code):
                if re.search(r"artifacts\.model\b", code):  # Artifacts.model is the LM itself
                    continue
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []

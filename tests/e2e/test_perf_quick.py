"""`bench perf --quick` on the embedded model: the cases the tiny-model tests cannot
reach (a real GGUF conversion, two real runs through the Runner) run and agree."""
import json

import pytest

from bench.cli import main


@pytest.mark.slow
def test_bench_perf_quick_model_load_and_cache(tmp_path):
    assert main(["perf", "--quick", "--only", "model-load,cache", "--out", str(tmp_path)]) == 0
    cases = {c["case"]: c for c in json.loads((tmp_path / "perf.json").read_text())["cases"]}
    assert set(cases) == {"model load", "cache", "harness overhead"}
    assert cases["model load"]["agree"] == "same logits" and cases["model load"]["value"] > 1
    assert cases["cache"]["details"]["agreed"] and cases["cache"]["value"] > 1
    assert 0 < cases["harness overhead"]["value"] < 1
    assert (tmp_path / "perf.md").read_text().count("|") > 20


"""The hostile-input suite: names that try to leave the output folder, a canary secret,
python-tagged YAML, pickle weights and adapters."""
import json
import sys

import pytest

import bench.cli
import bench.backends
from bench.backends.hf import load_hf
from bench import prepared
from bench.config import RunConfig, load_yaml
from bench.errors import BenchError
from bench.manifest import build_manifest
from bench.redact import MASK, redact
from bench.runner import Runner
from bench.store import RunStore
from conftest import CountingHandle, save_tiny_lm, write_task
from fakes import fake_definition
from strategies import STRATEGIES, definition

CANARY_ENV = "hf_canary_7f3a9b2c1d"
CANARY_ARGV = "sk-canary-argv-55aa"
CANARY_CFG = "canary-config-secret-1234"


def test_run_names_cannot_escape_the_output_folder(tmp_path, capsys):
    for name in ("../../x", "a/b", "..", "/etc"):
        with pytest.raises(BenchError, match="run name"):
            RunConfig(name=name, out=str(tmp_path))
    assert bench.cli.main(["run", "--name", "../../escape", "--out", str(tmp_path / "runs")]) == 2
    assert "run name" in capsys.readouterr().err
    store = RunStore(tmp_path / "runs" / "r")
    for cell in ("../../x|prompting|m|seed0", "/abs/path", "..", "a/../../b"):
        path = store.artifacts_dir(cell).resolve()
        assert path.parent == (store.root / "artifacts").resolve()


def test_task_named_like_a_path_stays_inside_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: CountingHandle())
    spec = write_task(tmp_path / "data", name="evil")
    spec.write_text(spec.read_text().replace("name: evil", "name: ../../../evil"))
    out = tmp_path / "deep" / "runs"
    cfg = RunConfig(tasks=[str(spec)], strategies=["prompting"], out=str(out), name="r", limit=2,
                    latency_sample=0, warmup=0)
    run_dir = Runner(cfg, log=lambda *_: None).run()
    made = [p for p in tmp_path.rglob("*") if "evil" in p.name and p.parent != tmp_path / "data"]
    assert made and all(str(p.resolve()).startswith(str(run_dir.resolve())) for p in made)
    assert RunStore(run_dir).read_rows()[0]["task"] == "../../../evil"  # kept as data, never as a path


class LeakyStrategy:
    name = "leaky"

    def prepare(self, task, model, budget):
        import os

        raise RuntimeError(f"401 from https://hub.example/api?token={os.environ['HF_TOKEN']}")

    def predict(self, artifacts, examples, progress=None):
        raise AssertionError


def build_leaky(options):
    return LeakyStrategy()


LEAKY = fake_definition("leaky", build_leaky)


def test_a_canary_secret_reaches_no_log_manifest_record_or_report(tmp_path, monkeypatch):
    from reports import render_run

    monkeypatch.setenv("HF_TOKEN", CANARY_ENV)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-canary-0000")
    monkeypatch.setattr(sys, "argv", ["bench", "run", "--api-key", CANARY_ARGV, f"--hf-token={CANARY_ARGV}"])
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: CountingHandle())
    monkeypatch.setitem(STRATEGIES._table, "leaky", f"{__name__}:LEAKY")
    spec = write_task(tmp_path / "data")
    cfg = RunConfig(tasks=[str(spec)], strategies=["prompting", "leaky"], out=str(tmp_path), name="r",
                    limit=2, latency_sample=0, warmup=0)
    logs = []
    run_dir = Runner(cfg, log=logs.append).run()
    render_run(run_dir)
    texts = "\n".join(map(str, logs))
    for path in run_dir.rglob("*"):
        if path.is_file():
            texts += path.read_text(errors="replace")
    assert "401 from https://hub.example/api?token=" + MASK in texts  # the error is kept, the token is not
    for canary in (CANARY_ENV, CANARY_ARGV, "sk-openai-canary-0000"):
        assert canary not in texts
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["command"][3] == MASK and manifest["command"][4] == f"--hf-token={MASK}"

    # Config values under secret-named keys, at any depth; counting keys stay readable.
    doc = build_manifest({"strategy_options": {"x": {"api_key": CANARY_CFG, "max_new_tokens": 8}},
                          "hub": {"HF_TOKEN": CANARY_CFG, "client_secret": CANARY_CFG}, "top_k": 3})
    assert CANARY_CFG not in json.dumps(doc)
    assert doc["config"]["strategy_options"]["x"]["max_new_tokens"] == 8 and doc["config"]["top_k"] == 3
    assert redact({"prompt_tokens": 5, "chunk_tokens": 9, "my_token": "abcdefgh"}) == \
        {"prompt_tokens": 5, "chunk_tokens": 9, "my_token": MASK}


def test_python_tagged_yaml_is_rejected_and_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    bad = tmp_path / "config.yaml"
    bad.write_text(f"limit: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(BenchError, match="not valid YAML"):
        load_yaml(bad)
    assert not marker.exists()


def test_pickle_weights_and_adapters_are_refused(tmp_path):
    folder = save_tiny_lm(tmp_path / "lm")
    model = load_hf(str(folder), device="cpu")  # safetensors: loads
    assert model.fingerprint.startswith("folder:")
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(BenchError, match=r"pickle files \(pytorch_model.bin\)"):
        load_hf(str(folder), device="cpu")

    entry = prepared.cache_dir("prepared") / "k1"
    (entry / "adapter").mkdir(parents=True)
    (entry / "adapter" / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    (entry / "meta.json").write_text(json.dumps({"info": {}, "prepare_s": 1.0}))
    with pytest.raises(BenchError, match="pickle"):
        prepared.load("k1", definition("lora"), None, model, None)

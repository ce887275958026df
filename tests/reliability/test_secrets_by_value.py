"""Secrets by value and by name, precisely: a canary in the environment and in `--set`
reaches no output file and not the console; ordinary words and the bench's own facts
(`cache_key`, token counts) stay readable; a name holding a secret is refused up front."""
import json
import sys

import pytest

import bench.cli
import bench.backends
from bench import redact
from bench.config import RunConfig
from bench.errors import BenchError
from bench.redact import MASK, is_secret_name, redact_argv
from conftest import CountingHandle, write_task

ENV_CANARY = "envcanary-3f9a1c77e2"
SET_CANARY = "setcanary-b41d0e5a9c"


@pytest.fixture(autouse=True)
def _forget_registered(monkeypatch):
    monkeypatch.setattr(redact, "_registered", set())


def _everything(root, console: str) -> str:
    text = console
    for path in root.rglob("*"):
        if path.is_file():
            text += path.read_bytes().decode("utf-8", errors="replace")
    return text


def _keyed():
    """prompting, plus a secret-named option (as an API backend's key would be)."""
    import dataclasses

    from strategies.prompting import STRATEGY

    def build(options):
        options = dict(options)
        options.pop("password")
        return STRATEGY.build(options)
    return dataclasses.replace(STRATEGY, name="keyed", build=build)


KEYED = _keyed()


@pytest.mark.parametrize("model", ["fake", pytest.param("embedded", marks=pytest.mark.slow)])
def test_canary_in_env_and_set_reaches_no_file_and_not_the_console(model, tmp_path, monkeypatch, capsys):
    from strategies import STRATEGIES

    if model == "fake":
        monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: CountingHandle())
    monkeypatch.setitem(STRATEGIES._table, "keyed", f"{__name__}:KEYED")
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_CANARY)
    spec = write_task(tmp_path / "data", n=12)
    # The secret also sits inside the task's inputs (a pasted log line, say).
    data = spec.parent / "mini.jsonl"
    data.write_text(data.read_text().replace("review number", f"review auth={ENV_CANARY} number"))
    argv = ["run", "--tasks", str(spec), "--strategies", "keyed", "--out", str(tmp_path / "runs"),
            "--name", "canary", "--limit", "2", "--latency-sample", "0", "--set", f"keyed.password={SET_CANARY}"]
    monkeypatch.setattr(sys, "argv", ["bench", *argv])
    rc = bench.cli.main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err
    run_dir = tmp_path / "runs" / "canary"
    everything = _everything(run_dir, out.out + out.err)
    assert (run_dir / "report.html").is_file() and f"auth={MASK}" in (run_dir / "rows.jsonl").read_text()
    assert ENV_CANARY not in everything and SET_CANARY not in everything
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert f"keyed.password={MASK}" in manifest["command"]
    assert manifest["config"]["strategy_options"]["keyed"]["password"] == MASK


def test_ordinary_words_and_the_benchs_own_facts_are_not_secrets():
    for name in ("cache_key", "prompt_tokens", "max_new_tokens", "chunk_tokens", "top_k", "secretary_name",
                 "keyword", "monkey", "index_key", "sort_key", "PWD", "OLDPWD"):
        assert not is_secret_name(name), name
    assert is_secret_name("DB_PWD")  # a password still, only the shell's folders are not
    for name in ("HF_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "STRIPE_KEY", "api_key", "apiKey",
                 "client_secret", "db_password", "--hf-token", "auth"):
        assert is_secret_name(name), name
    info = {"cache_key": "a1b2c3d4e5f6", "index": "flat", "prompt_tokens": 123}
    assert redact.redact(info) == info


def test_the_working_folder_is_not_masked(monkeypatch, tmp_path):
    # The shell exports PWD; masking it turned every run folder under it into [REDACTED].
    monkeypatch.setenv("PWD", str(tmp_path))
    assert redact.redact_text(f"run folder: {tmp_path}/runs/demo") == f"run folder: {tmp_path}/runs/demo"


def test_a_strategy_label_equal_to_a_secret_is_refused_before_anything_runs(monkeypatch):
    monkeypatch.setenv("TEAM_API_KEY", "prompting-4shot")
    with pytest.raises(BenchError, match="contains the value of a secret"):
        RunConfig(tasks=["squad"], strategies=[{"name": "prompting", "label": "prompting-4shot", "shots": 4}])


def test_secret_config_values_are_collected_once_and_masked_by_value_elsewhere():
    RunConfig(tasks=["squad"], strategies=["prompting"],
              strategy_options={"prompting": {"api_key": "cfgcanary-77aa"}})
    assert redact.redact_text("error: 401 for key cfgcanary-77aa") == f"error: 401 for key {MASK}"
    assert redact_argv(["bench", "--set", "rag.api_key=x-123456", "--set=lora.token=y-654321"]) == \
        ["bench", "--set", f"rag.api_key={MASK}", f"--set=lora.token={MASK}"]

"""The managed vLLM engine (one real server for the test run, started by the `vllm`
backend entry; tests/vllm_session.py) against the in-process hf backend, on the
embedded SmolLM2. Both run float32 on the same converted weights, and prompts are
rendered by the same chat template, so the two must choose the same labels."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

QUIET = lambda *a, **k: None  # noqa: E731


@pytest.fixture(scope="module")
def hf():
    from bench.backends import ModelSpec, load_lm

    return load_lm(ModelSpec.parse("smollm2-135m", "test"), device="cpu", log=QUIET)


def _prompts(lm, task, examples):
    from strategies.prompts import build_prompt, reserve_tokens

    return [build_prompt(lm, task, ex.input, reserve=reserve_tokens(task)) for ex in examples]


def _task(name):
    from tasks import load_task

    return load_task(name, seed=0)


def test_the_managed_entry_serves_the_converted_weights(vllm_lm):
    from bench.backends.vllm import served_model_folder

    caps = vllm_lm.capabilities
    assert caps.prompt_logprobs and caps.adapters and not caps.trainable
    assert vllm_lm.extra["backend"] == "vllm" and vllm_lm.extra["engine"].startswith("vllm 0.32")
    assert vllm_lm.facts["root"] == str(served_model_folder("smollm2-135m", QUIET))
    log = Path(vllm_lm.extra["server_log"])
    assert log.name == "vllm-server.log" and "--enable-lora" in log.read_text().splitlines()[0]
    assert vllm_lm.options.base_url.startswith("http://127.0.0.1:")


def test_classification_by_prompt_logprobs_picks_the_hf_labels(vllm_lm, hf):
    task = _task("rotten-tomatoes")
    examples = task.test[:40]
    prompts = _prompts(hf, task, examples)
    assert _prompts(vllm_lm, task, examples) == prompts  # the same template, rendered locally
    got = vllm_lm.score_choices(prompts, list(task.labels))
    want = hf.score_choices(prompts, list(task.labels))
    assert {s.method for s in got} == {"logprobs"}
    same = sum(a.best == b.best for a, b in zip(got, want)) / len(examples)
    gap = max(abs(x - y) for a, b in zip(got, want) for x, y in zip(a.logprobs, b.logprobs))
    print(f"\n[vllm] rotten-tomatoes labels: vLLM = hf on {same:.0%} of {len(examples)}; "
          f"largest log-prob gap {gap:.4f}")
    assert same >= 0.95
    assert gap < 0.5  # same weights, same dtype: scores, not only argmaxes, agree


def test_greedy_qa_answers_mostly_agree_with_hf(vllm_lm, hf):
    task = _task("squad")
    examples = task.test[:16]
    prompts = _prompts(hf, task, examples)
    got = vllm_lm.generate(prompts, max_new_tokens=16)
    want = hf.generate(prompts, max_new_tokens=16, batch_size=8)
    same = sum(a.text == b.text for a, b in zip(got, want)) / len(examples)
    print(f"\n[vllm] squad greedy answers (16 tokens): vLLM = hf on {same:.0%} of {len(examples)}")
    assert same >= 0.75
    assert all(g.completion_tokens > 0 and g.prompt_tokens > 0 for g in got)


def test_a_bench_trained_adapter_is_served_and_changes_answers(vllm_lm, tmp_path):
    """The lora strategy trains on the engine's local twin; the saved PEFT folder is loaded
    into the running server and answers like the in-process adapter, unlike the base."""
    from bench.lm import training_base
    from strategies.base import Budget
    from strategies.lora import build

    task = _task("rotten-tomatoes")
    base = training_base(vllm_lm, "lora")
    assert base.capabilities.trainable
    # No validation: with one validation example its loss rose after 3 steps on the current
    # train subset, the best-step rule kept step 0, and the saved adapter was the untrained
    # one (every lora_B zero), so it could change no answer.
    art = build({"max_steps": 3, "batch_size": 2, "eval_every": 3, "max_val_examples": 0,
                 "max_train_examples": 12, "max_length": 64, "learning_rate": 3e-3}).prepare(
        task, base, Budget(seed=0, workdir=tmp_path))
    adapter_dir = Path(art.info["saved_path"])  # the PEFT adapter folder the strategy saved
    served = vllm_lm.with_served_adapter(adapter_dir, "rt-lora")
    assert served.fingerprint != vllm_lm.fingerprint
    local = art.state["model"]  # the same adapter, in-process (PEFT)

    examples = task.test[:8]
    prompts = _prompts(vllm_lm, task, examples)
    before = [g.text for g in vllm_lm.generate(prompts, max_new_tokens=4)]
    after = [g.text for g in served.generate(prompts, max_new_tokens=4)]
    in_process = [g.text for g in local.generate(prompts, max_new_tokens=4, batch_size=8)]
    changed = sum(a != b for a, b in zip(before, after)) / len(examples)
    same_as_peft = sum(a == b for a, b in zip(after, in_process)) / len(examples)
    print(f"\n[vllm] served adapter: answers changed on {changed:.0%} of {len(examples)}; "
          f"equal to in-process PEFT on {same_as_peft:.0%}")
    assert changed >= 0.5
    assert same_as_peft >= 0.8
    labels = list(task.labels)
    by_served = [s.best for s in served.score_choices(prompts, labels)]
    by_peft = [s.best for s in local.score_choices(prompts, labels, batch_size=8)]
    assert sum(a == b for a, b in zip(by_served, by_peft)) >= len(examples) - 1

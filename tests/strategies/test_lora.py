"""LoRA: the loss mask, the untouched shared model, learning, early stopping, divergence,
the saved adapter, determinism and config checks, all on the tiny in-process model."""
import dataclasses

import pytest
import torch

from bench.backends import shared_adapters
from bench.errors import BenchError
from fakes import toy_classification, toy_qa
from strategies import lora_data
from strategies.base import Budget
from strategies.lora import STRATEGY, LoraStrategyConfig, build

# Few, big steps: the tiny model only needs to show a trend, quickly.
FAST = {"learning_rate": 0.05, "batch_size": 4, "eval_every": 4, "patience": 100, "dropout": 0.0}


def prepare(handle, task, seed=0, workdir=None, **options):
    strategy = build({**FAST, **options})
    return strategy, strategy.prepare(task, handle, Budget(seed=seed, workdir=workdir))


def test_loss_mask_covers_exactly_the_answer(tiny):
    task = toy_classification()
    seqs = lora_data.encode_examples(tiny, task, task.train[:3], max_length=256)
    batch = lora_data.collate(seqs, pad_id=tiny.tokenizer.pad_token_id)
    for row, ex in enumerate(task.train[:3]):
        labelled = batch["labels"][row][batch["labels"][row] != lora_data.IGNORE].tolist()
        assert tiny.tokenizer.decode(labelled) == ex.target + "<|im_end|>"
        # ...and the unlabelled real tokens are exactly the zero-shot prompt predict uses.
        real = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        assert tiny.tokenizer.decode(real[:len(real) - len(labelled)]) == tiny.render(
            "\n\n".join([task.instruction, "Options: positive, negative.", f"Input: {ex.input}"]))


def test_prompt_is_truncated_from_the_left(tiny):
    seq = lora_data.encode_pair(tiny, "the capital of France is Paris " * 20, "good<|im_end|>", max_length=16)
    assert len(seq.ids) == 16 and tiny.tokenizer.decode(list(seq.ids[-seq.n_labels:])) == "good<|im_end|>"
    assert tiny.tokenizer.decode(list(seq.ids[:-seq.n_labels])).endswith("Paris ")


def test_padding_and_logits_to_keep_do_not_change_the_loss(tiny):
    # A short sequence alone and inside a left-padded batch must get the same loss.
    task = toy_qa()
    seqs = lora_data.encode_examples(tiny, task, task.train, max_length=256)
    seqs.append(lora_data.TrainSeq(seqs[0].ids + (5,) * 30, 20))  # forces padding and a wide keep
    with torch.no_grad():
        alone, n_alone = lora_data.batch_loss(tiny.model, lora_data.collate(seqs[:1], 0), "cpu")
        both, n_both = lora_data.batch_loss(tiny.model, lora_data.collate([seqs[0], seqs[-1]], 0), "cpu")
        tail, n_tail = lora_data.batch_loss(tiny.model, lora_data.collate(seqs[-1:], 0), "cpu")
    assert n_both == n_alone + n_tail
    assert float(both) == pytest.approx(float(alone) + float(tail), rel=1e-4)


def test_shared_model_is_untouched_and_training_lowers_the_loss(tiny, tmp_path):
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    task = toy_classification()
    strategy, art = prepare(tiny, task, epochs=15, workdir=tmp_path)  # 2 steps an epoch -> 30 steps
    strategy.predict(art, task.test)
    # The adapter is attached to the shared model (no copy); without it, the base is as it was.
    base = shared_adapters.clean_copy(tiny.model)
    assert {n: p for n, p in base.named_parameters()}.keys() == before.keys()
    assert all(torch.equal(p, before[n]) for n, p in base.named_parameters())
    assert not any("lora" in n for n, _ in base.named_modules())

    info = art.info
    curve = [c["train_loss"] for c in info["loss_curve"] if c["train_loss"] is not None]
    assert info["steps"] == 30 and len(curve) == 30 and info["epochs_run"] == 15
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5 - 0.1
    # Validation before training and every eval_every steps (and at the last one).
    assert [c["step"] for c in info["loss_curve"] if c["val_loss"] is not None] == [0, 4, 8, 12, 16, 20, 24, 28, 30]
    assert info["best_val_loss"] < info["loss_curve"][0]["val_loss"]
    assert 0 < info["trainable_params"] < info["total_params"] and info["tokens_seen"] > 0
    assert art.state["model"].fingerprint.startswith(tiny.fingerprint + ":lora:")


def test_early_stopping_restores_the_best_adapter(tiny):
    # Validation labels are the opposite of training labels: once training has learnt
    # the shared end marker, every step makes validation worse (overfitting, by design).
    task = toy_classification()
    flip = {"positive": "negative", "negative": "positive"}
    task = dataclasses.replace(task, validation=[dataclasses.replace(ex, target=flip[ex.target])
                                                 for ex in task.train])
    _, art = prepare(tiny, task, epochs=20, eval_every=2, patience=1, autocast="off")  # fp32: compared below in fp32
    info = art.info
    evals = [(c["step"], c["val_loss"]) for c in info["loss_curve"] if c["val_loss"] is not None]
    best = min(range(len(evals)), key=lambda i: evals[i][1])
    assert info["stopped_early"] and info["steps"] < 40
    assert len(evals) == best + 2 and evals[-1][1] >= evals[best][1]  # patience=1: one bad eval
    assert info["best_val_loss"] == evals[best][1]
    # The returned weights are the best ones, not the last ones.
    seqs = lora_data.encode_examples(tiny, task, task.validation, 256)
    with torch.no_grad():
        loss, n = lora_data.batch_loss(art.state["model"].model, lora_data.collate(seqs, 0), "cpu")
    assert float(loss) / n == pytest.approx(info["best_val_loss"], abs=1e-4)


def test_nan_loss_raises_and_writes_no_adapter(tiny, tmp_path, monkeypatch):
    real = lora_data.token_losses
    calls = []

    def poisoned(logits, labels):
        loss, n = real(logits, labels)
        calls.append(1)
        return (loss * float("nan"), n) if len(calls) > 3 else (loss, n)

    monkeypatch.setattr(lora_data, "token_losses", poisoned)
    with pytest.raises(BenchError, match=r"diverged \(loss=nan at step \d+\); lower learning_rate"):
        prepare(tiny, toy_classification(), epochs=5, workdir=tmp_path)
    assert not (tmp_path / "weights").exists()


def test_absurd_learning_rate_diverges(tiny, tmp_path):
    with pytest.raises(BenchError, match="diverged"):
        prepare(tiny, toy_classification(), learning_rate=1e12, epochs=10, workdir=tmp_path)
    assert not (tmp_path / "weights").exists()


def test_adapter_is_safetensors_and_reloads(tiny, tmp_path):
    task = toy_qa()
    strategy, art = prepare(tiny, task, max_steps=3, workdir=tmp_path)
    folder = tmp_path / "weights"
    names = sorted(p.name for p in folder.iterdir())
    assert "adapter_model.safetensors" in names and "adapter_config.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    assert art.info["saved_path"] == str(folder) and len(art.info["weights_sha256"]) == 64
    assert art.info["saved_bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    store = tmp_path / "store"
    store.mkdir()
    facts = STRATEGY.artifacts.save(art, store)
    reloaded = STRATEGY.artifacts.load(store, task, tiny, facts).state["model"]
    assert reloaded.fingerprint == art.state["model"].fingerprint
    prompts = [tiny.render("What colour is the Zorblat gadget?")]
    assert reloaded.generate(prompts, 6)[0].text == art.state["model"].generate(prompts, 6)[0].text


def test_same_seed_same_curve_other_seed_differs(tiny):
    task = toy_classification()
    options = {"max_steps": 6, "eval_every": 3, "dropout": 0.1}
    first = prepare(tiny, task, seed=1, **options)[1].info
    again = prepare(tiny, task, seed=1, **options)[1].info
    other = prepare(tiny, task, seed=2, **options)[1].info
    assert first["loss_curve"] == again["loss_curve"] and first["weights_sha256"] == again["weights_sha256"]
    assert first["loss_curve"] != other["loss_curve"]


def test_training_on_corpus_and_caps(tiny):
    task = toy_qa()  # 4 train questions, 8 documents; batch_size 4
    _, plain = prepare(tiny, task, max_val_examples=1)
    _, with_docs = prepare(tiny, task, max_val_examples=1, train_on_corpus=True)
    assert plain.info["val_examples"] == 1 and plain.info["train_examples"] == 4
    assert (plain.info["steps"], with_docs.info["steps"]) == (1, 3)
    docs = lora_data.encode_corpus(tiny, task.corpus, max_length=8)
    assert all(len(d.ids) <= 8 and d.n_labels == len(d.ids) - 1 for d in docs) and len(docs) > 8
    _, capped = prepare(tiny, task, max_steps=1, max_train_examples=2)
    assert capped.info["train_examples"] == 2


@pytest.mark.parametrize("options, message", [
    ({"r": 0}, "lora.r must be an integer >= 1"),
    ({"rank": 8}, r"unknown option\(s\) rank"),
    ({"learning_rate": "fast"}, "learning_rate must be a number"),
    ({"learning_rate": 0}, "learning_rate must be a finite number > 0"),
    ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
    ({"batch_size": 2.5}, "batch_size must be an integer"),
    ({"target_modules": []}, "target_modules"),
    ({"train_on_corpus": "yes"}, "train_on_corpus must be true or false"),
])
def test_invalid_config_is_a_bench_error(options, message):
    with pytest.raises(BenchError, match=message):
        build(options)


def test_config_normalises_yaml_values():
    cfg = LoraStrategyConfig(learning_rate="1e-3", target_modules=["q_proj", "v_proj"])
    assert cfg.learning_rate == 0.001 and cfg.target_modules == ("q_proj", "v_proj")
    assert build().name == "lora"


@pytest.mark.gpu
def test_trains_in_bf16_on_cuda(tmp_path):
    import dataclasses as dc

    from fakes import tiny_handle

    handle = tiny_handle(seed=3)
    handle = dc.replace(handle, model=handle.model.to("cuda", torch.bfloat16), device="cuda")
    task = toy_classification()
    strategy, art = prepare(handle, task, max_steps=4, workdir=tmp_path)
    assert art.info["dtype"] == "bfloat16" and art.info["device"] == "cuda"
    assert all(c["train_loss"] is None or c["train_loss"] == c["train_loss"] for c in art.info["loss_curve"])
    assert len(strategy.predict(art, task.test)) == len(task.test)
    assert next(handle.model.parameters()).dtype == torch.bfloat16


def test_merged_adapter_answers_like_the_unmerged_one_and_leaves_the_shared_model(tiny):
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    task = toy_qa()
    strategy, art = prepare(tiny, task, epochs=3)
    unmerged = strategy.predict(art, task.test)
    (name, merged_art), = list(strategy.latency_variants(art))
    assert name == "merged"
    merged_model = merged_art.state["model"].model
    assert not any("lora_" in n for n, _ in merged_model.named_parameters())  # really merged
    merged = strategy.predict(merged_art, task.test)
    assert [p.output for p in merged] == [p.output for p in unmerged]
    for n, p in shared_adapters.clean_copy(tiny.model).named_parameters():
        assert torch.equal(p, before[n]), n

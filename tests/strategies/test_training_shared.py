"""Adapter cells without a copy of the base weights (bench/backends/shared_adapters.py):
the adapter attaches to the one shared model and leaves it bit-identical, other users of
the model never see it, it trains exactly as over a private copy, it saves in PEFT's
layout, and twelve adapter cells in a row do not grow the live tensor memory."""
import copy
import gc
import hashlib

import pytest
import torch

from bench.backends import shared_adapters
from fakes import tiny_handle, toy_classification, toy_qa
from strategies import STRATEGIES, training
from strategies.base import Budget
from strategies.prompts import build_prompt, reserve_tokens

FAST = {"learning_rate": 0.05, "batch_size": 4, "max_steps": 3, "eval_every": 2, "patience": 100,
        "max_val_examples": 4, "forgetting": False}


@pytest.fixture
def handle():
    return tiny_handle(seed=3)  # its own model: these tests attach and count adapters


def state_hash(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def label_logprobs(lm, task):
    prompts = [build_prompt(lm, task, ex.input, reserve=reserve_tokens(task)) for ex in task.test]
    return torch.tensor([s.logprobs for s in lm.score_choices(prompts, list(task.labels))])


def same(a, b):
    """Equal to float rounding: the same logits can differ in the last bit between two
    calls when the LM head's matmul sees its input at another memory alignment (packed
    label scoring, bench/backends/packing.py); an adapter that leaked moves them > 1e-4."""
    return torch.allclose(a, b, rtol=0, atol=1e-5)


def prepare(name, handle, task, **options):
    strategy = STRATEGIES.load(name).build({**FAST, **options})
    return strategy, strategy.prepare(task, handle, Budget(seed=0))


def live_tensor_bytes() -> int:
    """Bytes of every distinct tensor storage Python can reach: what a copy of the
    weights costs, without the allocator's caching that RSS includes."""
    gc.collect()
    seen, total = set(), 0
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and not obj.is_meta:
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


def test_a_lora_cell_leaves_the_base_bit_identical_and_prompting_unchanged(handle):
    task = toy_classification()
    model = handle.model
    before_hash, before_lp = state_hash(model), label_logprobs(handle, task)
    modules_before = [type(m).__name__ for m in model.modules()]
    strategy, art = prepare("lora", handle, task)
    assert shared_adapters.attached(model)  # on the shared model: no copy
    adapted = art.state["model"]
    assert adapted.torch_model.shared is model
    # While the adapter is attached, the base still answers as before ...
    assert same(label_logprobs(handle, task), before_lp)
    assert state_hash(shared_adapters.clean_copy(model)) == before_hash
    # ... and the adapter answers differently, also after the base ran in between.
    adapted_lp = label_logprobs(adapted, task)
    assert not torch.allclose(adapted_lp, before_lp, atol=1e-4)
    assert same(label_logprobs(handle, task), before_lp)
    assert same(label_logprobs(adapted, task), adapted_lp)
    del strategy, art, adapted
    gc.collect()
    assert shared_adapters.attached(model) == []
    assert state_hash(model) == before_hash  # same names, same bits: the model as loaded
    assert [type(m).__name__ for m in model.modules()] == modules_before
    assert not hasattr(model, "peft_config") and not model._forward_pre_hooks_with_kwargs
    assert same(label_logprobs(handle, task), before_lp)


def test_training_on_the_shared_model_equals_training_a_private_copy(handle):
    task = toy_classification()
    from strategies.lora import LoraStrategyConfig, lora_config

    def copy_wrap(base, cfg, task, lm):
        from peft import get_peft_model

        return get_peft_model(base, lora_config(cfg))

    old = training.Method("lora", copy_wrap, training.peft_model_reload, training.peft_save, training.peft_state,
                          copy_base=lambda lm: copy.deepcopy(lm.torch_model))
    cfg = LoraStrategyConfig(**FAST)
    copy_art = training.train_artifacts("lora", old, cfg, task, handle, Budget(seed=0))  # the path before
    _, shared_art = prepare("lora", handle, task)
    assert shared_art.info["weights_sha256"] == copy_art.info["weights_sha256"]
    assert shared_art.info["total_params"] == copy_art.info["total_params"]
    assert shared_art.info["trainable_params"] == copy_art.info["trainable_params"]
    torch.testing.assert_close(label_logprobs(shared_art.state["model"], task),
                               label_logprobs(copy_art.state["model"], task), rtol=0, atol=1e-5)


def test_adapters_of_several_cells_live_side_by_side(handle):
    task = toy_classification()
    base_lp = label_logprobs(handle, task)
    _, lora = prepare("lora", handle, task)
    lora_lp = label_logprobs(lora.state["model"], task)
    _, ia3 = prepare("ia3", handle, task, learning_rate=0.2)  # IA3 wraps layers LoRA already wrapped
    _, dora = prepare("dora", handle, task)
    _, soft = prepare("prompt-tuning", handle, task, learning_rate=0.3)
    assert len(shared_adapters.attached(handle.model)) == 3  # a soft prompt injects nothing
    scores = {name: label_logprobs(art.state["model"], task) for name, art in
              (("ia3", ia3), ("dora", dora), ("soft", soft))}
    assert same(label_logprobs(lora.state["model"], task), lora_lp)
    assert same(label_logprobs(handle, task), base_lp)
    for name, lp in scores.items():
        assert not torch.allclose(lp, base_lp, atol=1e-4), name
    del lora
    gc.collect()  # the LoRA adapter goes; the IA3 layers around its layers stay and answer as before
    assert len(shared_adapters.attached(handle.model)) == 2
    assert same(label_logprobs(ia3.state["model"], task), scores["ia3"])
    assert same(label_logprobs(soft.state["model"], task), scores["soft"])
    assert same(label_logprobs(handle, task), base_lp)


def test_full_ft_copies_the_base_without_other_cells_adapters(handle):
    task = toy_classification()
    before = state_hash(handle.model)
    _, lora = prepare("lora", handle, task)
    _, full = prepare("full-ft", handle, task)
    own = full.state["model"].torch_model
    assert own is not handle.model and not hasattr(own, shared_adapters._STATE)
    assert not any("lora" in n for n, _ in own.named_parameters())
    del lora, full, own
    gc.collect()
    assert state_hash(handle.model) == before


def test_the_saved_adapter_is_peft_layout_and_reloads_onto_the_shared_model(handle, tmp_path):
    from peft import PeftModel

    task = toy_qa()
    sdef = STRATEGIES.load("lora")
    strategy = sdef.build(FAST)
    art = strategy.prepare(task, handle, Budget(seed=0, workdir=tmp_path / "w"))
    expected = label_logprobs(art.state["model"], toy_classification())
    folder = tmp_path / "store"
    folder.mkdir()
    facts = sdef.artifacts.save(art, folder)
    again = sdef.artifacts.load(folder, task, handle, facts)  # checks the weights fingerprint
    torch.testing.assert_close(label_logprobs(again.state["model"], toy_classification()), expected,
                               rtol=0, atol=1e-6)
    # PEFT's own loader reads the folder over a plain copy, and answers the same.
    peft = PeftModel.from_pretrained(shared_adapters.clean_copy(handle.model), str(folder / "weights")).eval()
    via_peft = handle.with_adapter(peft, fingerprint="peft")
    torch.testing.assert_close(label_logprobs(via_peft, toy_classification()), expected, rtol=0, atol=1e-5)
    # The merged variant is a private merged copy; the shared model is never merged into.
    before = state_hash(shared_adapters.clean_copy(handle.model))
    (_, merged), = list(strategy.latency_variants(art))
    assert merged.state["model"].torch_model is not handle.model
    torch.testing.assert_close(label_logprobs(merged.state["model"], toy_classification()), expected,
                               rtol=0, atol=1e-4)
    assert state_hash(shared_adapters.clean_copy(handle.model)) == before


def test_twelve_adapter_cells_do_not_grow_live_tensor_memory(handle):
    """Live tensor bytes (not RSS: the tiny model is a few hundred KB, far below RSS
    noise; a leaked copy per cell would add its whole size here)."""
    task = toy_classification()
    model_bytes = sum(p.numel() * p.element_size() for p in handle.model.parameters())
    after = []
    for cell in range(12):
        name = ("lora", "dora", "ia3")[cell % 3]
        strategy, art = prepare(name, handle, task, max_steps=1, max_val_examples=0)
        strategy.predict(art, task.test[:2])
        during = live_tensor_bytes()
        del strategy, art
        after.append(live_tensor_bytes())
        if cell == 0:
            # No copy while the cell is alive: growth below one model's size.
            assert during - after[0] < model_bytes
    assert shared_adapters.attached(handle.model) == []
    assert max(after[1:]) < after[0] * 1.10, after

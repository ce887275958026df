"""The one training path every weight-changing strategy shares (LoRA, DoRA, IA3,
prompt tuning, QLoRA, full fine-tuning, RAG+LoRA): plain functions, no base class.

A technique is a `Method`: how to wrap a private copy of the base weights into a
trainable module, which of its weights it changes, and how those are saved and
reloaded. Everything else is here, once:
- the data: zero-shot prompts plus answers, loss on answer tokens only
  (`strategies/lora_data.py`), or sequences the strategy makes itself (`encode`);
- the loop (`strategies/train_loop.py`): AdamW, validation-picked best weights, early
  stop, divergence errors, CUDA OOM halving;
- the facts every cell records: trainable parameters, tokens/s, peak memory of
  training, the bytes saved on disk, and the forgetting probe (`strategies/forgetting.py`).
- No copy of the base weights for an adapter: `wrap` gets the shared model itself and
  attaches a named PEFT adapter to it (bench/backends/shared_adapters.py), which is
  deleted, leaving the base bit-identical, when the cell's artifacts are dropped. Full
  fine-tuning and QLoRA change or re-encode every weight, so their `copy_base` gives a
  private copy (without other cells' adapters), freed with the artifacts.
"""
from __future__ import annotations

import contextlib
import hashlib
import random
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from bench.errors import BenchError
from strategies.base import Artifacts, Budget, Prediction
from strategies.prompts import build_prompt, labelled_subset, predict_prompts, reserve_tokens
from strategies.train_loop import train_loop

# The modules every weight-changing strategy's artifacts and answers depend on (cache keys).
CODE = ("strategies.training", "strategies.training_config", "strategies.train_loop", "strategies.lora_data",
        "strategies.prompts", "strategies.forgetting")
# What a weight-changing cell asks an executor for; num_gpus applies on machines with GPUs.
RESOURCES = {"num_cpus": 1, "num_gpus": 1}
# -- methods --------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """How one technique changes weights. `wrap(base_copy, cfg, task, lm)` returns the
    trainable module (it may freeze what it does not train); `reload(base_copy, folder)`
    rebuilds it from what `save(module, folder)` wrote; `state(module)` is what the
    technique changed (its fingerprint); `merge(module)` folds it into plain weights for
    the merged latency variant (None: nothing to merge); `copy_base(lm)` gives the
    weights `wrap` gets: the shared model for an adapter, a private copy for full
    fine-tuning (a 4-bit one for QLoRA)."""

    name: str
    wrap: Callable[[Any, Any, Any, Any], Any]
    reload: Callable[[Any, Path], Any]
    save: Callable[[Any, Path], None]
    state: Callable[[Any], Mapping[str, Any]]
    merge: Callable[[Any], Any] | None = None
    copy_base: Callable[[Any], Any] = lambda lm: lm.torch_model  # shared: adapters attach to it
    dtype: Callable[[Any, str], str] | None = None  # the dtype it trains in, for the facts
    servable: bool = False  # a LoRA adapter an adapter-serving backend (vLLM --enable-lora) can serve


def peft_save(module: Any, folder: Path) -> None:
    with quiet_peft():
        module.save_pretrained(str(folder), safe_serialization=True)


def peft_reload(base: Any, folder: Path, label: str = "reloaded") -> Any:
    """The saved adapter attached to `base` (the shared model: no copy)."""
    from bench.backends import shared_adapters

    with quiet_peft():
        return shared_adapters.load(base, Path(folder), label)


def peft_model_reload(base: Any, folder: Path) -> Any:
    """A PeftModel over `base` (a private copy, or a soft prompt that injects nothing)."""
    from peft import PeftModel

    with quiet_peft():
        return PeftModel.from_pretrained(base, str(folder)).eval()


def peft_state(module: Any) -> Mapping[str, Any]:
    from peft import get_peft_model_state_dict

    if hasattr(module, "adapter_state"):  # an adapter attached to the shared model
        return module.adapter_state()
    return get_peft_model_state_dict(module)


def peft_merge(module: Any) -> Any:
    with quiet_peft():
        return module.merge_and_unload()


def peft_wrap(make_config: Callable[[Any, Any, Any], Any], label: str) -> Callable[[Any, Any, Any, Any], Any]:
    """A `wrap` for a PEFT tuner whose config `make_config(cfg, task, lm)` builds: the
    adapter is attached to `base` (the shared model) and only its weights train."""
    def wrap(base: Any, cfg: Any, task: Any, lm: Any) -> Any:
        from bench.backends import shared_adapters

        view = shared_adapters.attach(base, make_config(cfg, task, lm), label)
        view.trainable()
        return view
    return wrap


def serve(name: str, method: Method, model: Any, base: Any, adapted: Any, folder: Path | None) -> Any:
    """Where predictions run: in-process (`adapted`) when the backend trains itself, else
    the adapter-serving backend with the saved adapter loaded (a LoRA adapter only)."""
    if model is base:
        return adapted
    if not method.servable or folder is None:
        raise BenchError(f"{name}: model {model.name!r} serves LoRA adapters only, and {name} "
                         f"{'is not a LoRA adapter' if not method.servable else 'saved none (no workdir)'}; "
                         "run it on the hf backend")
    return model.with_served_adapter(folder, f"{name}-{adapted.fingerprint.rsplit(':', 1)[-1]}")


def peft_method(name: str, make_config, merge: bool = True, **kw: Any) -> Method:
    return Method(name, peft_wrap(make_config, name), lambda base, folder: peft_reload(base, folder, name),
                  peft_save, peft_state, peft_merge if merge else None, **kw)


def weights_sha256(state: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


@contextlib.contextmanager
def quiet_peft():
    # peft 0.21 calls a transformers API deprecated in v5; the warning is not the user's to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


# -- the strategy all weight-changing methods share (composition, not inheritance) -------
Encode = Callable[[Any, Any, list, Any, random.Random], list]  # (lm, task, examples, cfg, rng) -> TrainSeq


class TrainedStrategy:
    """`prepare` trains `method` on the task; `predict` answers with the same zero-shot
    prompt `prompting` uses, so the only difference between the two is the weights."""

    def __init__(self, name: str, method: Method, config: Any) -> None:
        self.name, self.method, self.config = name, method, config

    def prepare(self, task, model, budget: Budget) -> Artifacts:
        return train_artifacts(self.name, self.method, self.config, task, model, budget)

    def predict(self, artifacts: Artifacts, examples, progress=None) -> list[Prediction]:
        return predict_zero_shot(artifacts, examples, self.config.predict_batch_size, progress)

    def latency_variants(self, artifacts: Artifacts):
        yield from merged_variant(self.method, artifacts)


def predict_zero_shot(artifacts: Artifacts, examples, batch_size: int, progress=None) -> list[Prediction]:
    task, adapted = artifacts.task, artifacts.state["model"]
    prompts = [build_prompt(adapted, task, ex.input, reserve=reserve_tokens(task)) for ex in examples]
    return predict_prompts(adapted, task, examples, prompts, batch_size, progress=progress)


def merged_variant(method: Method, artifacts: Artifacts):
    """The adapter merged into the weights: no extra matmuls per layer, one model per
    adapter: a private merged copy (the shared model is never merged into), which lives
    as long as the variant's artifacts (the runner runs it last)."""
    adapted = artifacts.state["model"]
    if method.merge is None or not hasattr(getattr(adapted, "torch_model", None), "merge_and_unload"):
        return  # nothing to merge, or served elsewhere (an adapter-serving backend)
    merged = adapted.with_adapter(method.merge(adapted.torch_model), fingerprint=f"{adapted.fingerprint}:merged")
    yield "merged", replace(artifacts, state={**artifacts.state, "model": merged})


def train_subset(task, cfg: Any, budget: Budget, rng: random.Random) -> list:
    cap = min((c for c in (cfg.max_train_examples, budget.max_train_examples) if c is not None), default=None)
    return labelled_subset(task.train, cap, budget.seed)  # nested across caps (learning curves)


def zero_shot_sequences(lm, task, examples, cfg, rng) -> list:
    from strategies import lora_data as data

    return data.encode_examples(lm, task, examples, cfg.max_length)


def train_artifacts(name: str, method: Method, cfg: Any, task, model, budget: Budget,
                    encode: Encode = zero_shot_sequences, state: Mapping[str, Any] | None = None) -> Artifacts:
    """Train `method` on `task` over a private copy of `model`'s weights. `encode` makes
    the training and validation sequences (default: the zero-shot prompts); `state` is
    merged into the artifacts' state (a RAG index that predict needs too)."""
    import torch

    from bench.lm import training_base
    from bench.resources import PeakMemory
    from strategies import forgetting
    from strategies import lora_data as data

    base = training_base(model, name)
    if base is not model and not method.servable:  # fail before training, not after
        serve(name, method, model, base, None, None)
    rng = random.Random(budget.seed)
    train = train_subset(task, cfg, budget, rng)
    seqs = encode(base, task, train, cfg, rng)
    if cfg.train_on_corpus and task.corpus:
        seqs += data.encode_corpus(base, task.corpus, cfg.max_length)
    if not seqs:
        raise BenchError(f"{name}: task {task.name!r} has no training examples")
    val = list(task.validation)
    if len(val) > cfg.max_val_examples:
        val = random.Random(f"{budget.seed}:val").sample(val, cfg.max_val_examples)
    val_seqs = encode(base, task, val, cfg, random.Random(f"{budget.seed}:val-seqs"))

    probe_before = forgetting.base_scores(base, cfg.probe_examples) if cfg.forgetting else None
    torch.manual_seed(budget.seed)  # adapter init and dropout
    with PeakMemory() as mem:
        module = method.wrap(method.copy_base(base), cfg, task, base)
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        total = counted_parameters(module, trainable)
        if cfg.gradient_checkpointing:
            enable_checkpointing(module)
        t0 = time.perf_counter()
        result = train_loop(module, seqs, val_seqs, cfg, rng, base.device, base.pad_token_id, budget.progress,
                            f"train {name}")
        train_seconds = time.perf_counter() - t0
    module.eval()

    weights = weights_sha256(method.state(module))
    saved_path = saved_bytes = None
    if budget.workdir is not None:
        folder = Path(budget.workdir) / "weights"
        method.save(module, folder)
        saved_path, saved_bytes = str(folder), folder_bytes(folder)
    adapted = base.with_adapter(module, fingerprint=f"{base.fingerprint}:{name}:{weights[:12]}")
    served = serve(name, method, model, base, adapted, Path(saved_path) if saved_path else None)
    base_dtype = next(module.parameters()).dtype
    info = {"method": method.name, "trainable_params": trainable, "total_params": total,
            "trainable_share": round(trainable / max(total, 1), 6), "train_examples": len(train),
            "val_examples": len(val), "train_seconds": round(train_seconds, 3), **result,
            "train_peak_memory_mb": round(mem.rss_mb, 1),
            "train_peak_gpu_memory_mb": None if mem.gpu_mb is None else round(mem.gpu_mb, 1),
            "saved_path": saved_path, "saved_bytes": saved_bytes, "weights_sha256": weights,
            "device": base.device, "gradient_checkpointing": cfg.gradient_checkpointing,
            "dtype": method.dtype(module, base.device) if method.dtype else
            ("bfloat16" if base.device.startswith("cuda") else str(base_dtype).removeprefix("torch."))}
    if probe_before is not None:
        info.update(forgetting.compare(probe_before, forgetting.scores(adapted, module, cfg.probe_examples)))
    # The probe runs in-process on the trained weights, wherever predictions are served.
    # "trained" is the in-process module even when predictions run on a server (it is what is saved).
    return Artifacts(name, model, task, state={**(state or {}), "model": served, "trained": adapted}, info=info)


def counted_parameters(module: Any, trainable: int) -> int:
    """The module's parameters; for an adapter on the shared model, the base's plus its
    own (not those of other cells' adapters attached beside it)."""
    if not hasattr(module, "adapter_state"):
        return sum(p.numel() for p in module.parameters())
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapter_ids = {id(p) for m in module.shared.modules() if isinstance(m, BaseTunerLayer)
                   for attr in m.adapter_layer_names for p in getattr(m, attr).parameters()}
    return sum(p.numel() for p in module.shared.parameters() if id(p) not in adapter_ids) + trainable


def enable_checkpointing(module: Any) -> None:
    """Non-reentrant checkpointing: works with frozen inputs under PEFT."""
    base = module.get_base_model() if hasattr(module, "get_base_model") else getattr(module, "shared", module)
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5 name
        base.activation_checkpointing_enable({"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


# -- saving and loading (bench/prepared.py places, keys and checksums the folder) -------------
@dataclass(frozen=True)
class WeightsStore:
    """The `ArtifactStore` of a weight-changing strategy: the method's own files
    (safetensors), reloaded over a fresh private copy of the base weights."""

    name: str
    method: Method
    extra: Callable[[Artifacts, Path], dict] | None = None  # more state to save (rag-lora's index)
    restore: Callable[[Path, Any, Any, Mapping], dict] | None = None

    def save(self, artifacts: Artifacts, folder: Path) -> dict[str, Any]:
        trained = artifacts.state.get("trained", artifacts.state["model"])
        self.method.save(trained.torch_model, Path(folder) / "weights")
        facts = {"weights_sha256": artifacts.info.get("weights_sha256")}
        if self.extra is not None:
            facts.update(self.extra(artifacts, Path(folder)))
        return facts

    def load(self, folder: Path, task, lm, facts: Mapping[str, Any]) -> Artifacts:
        from bench.lm import training_base

        base = training_base(lm, self.name)
        module = self.method.reload(self.method.copy_base(base), Path(folder) / "weights")
        weights = weights_sha256(self.method.state(module))
        if facts.get("weights_sha256") and weights != facts["weights_sha256"]:
            raise BenchError(f"{self.name}: the reloaded weights differ from the trained ones")
        adapted = base.with_adapter(module, fingerprint=f"{base.fingerprint}:{self.name}:{weights[:12]}")
        state = self.restore(Path(folder), task, lm, facts) if self.restore else {}
        served = serve(self.name, self.method, lm, base, adapted, Path(folder) / "weights")
        return Artifacts(self.name, lm, task, state={**state, "model": served, "trained": adapted})

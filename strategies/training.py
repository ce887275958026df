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
import math
import random
import time
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from bench.errors import BenchError
from strategies.base import Artifacts, Budget, Prediction
from strategies.prompts import build_prompt, labelled_subset, predict_prompts, reserve_tokens
from strategies.train_loop import train_loop

# The modules every weight-changing strategy's artifacts and answers depend on (cache keys).
CODE = ("strategies.training", "strategies.train_loop", "strategies.lora_data", "strategies.prompts", "strategies.forgetting")
# What a weight-changing cell asks an executor for; num_gpus applies on machines with GPUs.
RESOURCES = {"num_cpus": 1, "num_gpus": 1}
# Fields shared by every weight-changing strategy's config, with their lower bounds.
_INTS = {"epochs": 1, "batch_size": 1, "grad_accum": 1, "max_length": 8, "eval_every": 1, "patience": 1,
         "max_val_examples": 0, "warmup_steps": 0, "predict_batch_size": 1, "probe_examples": 0}
_OPTIONAL_INTS = {"max_steps": 1, "max_train_examples": 1}
_FLOATS = {"learning_rate": 0.0, "weight_decay": 0.0}
_BOOLS = ("train_on_corpus", "gradient_checkpointing", "pad_to_max", "forgetting")
AUTOCAST = ("auto", "bf16", "off")


@dataclass(frozen=True)
class TrainingConfig:
    """Training options every weight-changing strategy has. A method's config adds its
    own fields (and may change a default, as full-ft does for the learning rate)."""

    PREFIX: ClassVar[str] = "training"
    # High, because a bench run trains for tens of steps, not thousands.
    learning_rate: float = 1e-3
    epochs: int = 1
    max_steps: int | None = None  # a cap on optimizer steps over all epochs
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    eval_every: int = 10
    patience: int = 3
    max_train_examples: int | None = None
    max_val_examples: int = 64
    train_on_corpus: bool = False
    warmup_steps: int = 0
    weight_decay: float = 0.0
    predict_batch_size: int = 8
    packing: str | bool = "auto"  # auto: on CUDA
    gradient_checkpointing: bool = False  # less activation memory for ~30% more compute
    pad_to_max: bool = False  # bench perf's baseline: pad to max_length, LM head everywhere
    forgetting: bool = True  # score the general-skill probe before and after (strategies/forgetting.py)
    probe_examples: int = 32
    # bf16 matmuls over fp32 weights: auto (where bf16 is native: CUDA, a CPU with
    # avx512_bf16/amx_bf16), bf16 or off (strategies/train_loop.py autocast_dtype).
    autocast: str = "auto"

    def __post_init__(self) -> None:
        check_training(self)


def bad(cfg: Any, name: str, want: str) -> BenchError:
    return BenchError(f"{cfg.PREFIX}.{name} must be {want}, got {getattr(cfg, name)!r}")


def check_training(cfg: Any, ints: Mapping[str, int] = {}, floats: Mapping[str, float] = {}) -> None:
    """Validate (and normalise) the shared fields plus a method's own numeric ones."""
    ints, floats = {**_INTS, **ints}, {**_FLOATS, **floats}
    for name in floats:  # YAML reads 1e-3 (no dot) as a string
        value = getattr(cfg, name)
        if isinstance(value, str):
            try:
                object.__setattr__(cfg, name, float(value))
            except ValueError:
                raise bad(cfg, name, "a number") from None
    for name, low in {**ints, **_OPTIONAL_INTS}.items():
        value = getattr(cfg, name)
        if value is None and name in _OPTIONAL_INTS:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(cfg, name, f"an integer >= {low}")
    for name, low in floats.items():
        value = getattr(cfg, name)
        strict = name != "weight_decay"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < low or (value == low and strict):
            raise bad(cfg, name, f"a finite number {'>' if strict else '>='} {low}")
    for name in _BOOLS:
        if not isinstance(getattr(cfg, name), bool):
            raise bad(cfg, name, "true or false")
    if cfg.packing not in ("auto", True, False):
        raise bad(cfg, "packing", "auto, true or false")
    if cfg.autocast is False:  # YAML reads a bare `off` as false
        object.__setattr__(cfg, "autocast", "off")
    if cfg.autocast not in AUTOCAST:
        raise bad(cfg, "autocast", ", ".join(AUTOCAST[:-1]) + " or " + AUTOCAST[-1])


def check_targets(cfg: Any, name: str = "target_modules") -> None:
    targets = getattr(cfg, name)
    if isinstance(targets, (list, tuple)):
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise bad(cfg, name, '"all-linear" or a non-empty list of module names')
        object.__setattr__(cfg, name, tuple(targets))
    elif not (isinstance(targets, str) and targets):
        raise bad(cfg, name, '"all-linear" or a non-empty list of module names')


def training_fields() -> set[str]:
    return {f.name for f in fields(TrainingConfig)}


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

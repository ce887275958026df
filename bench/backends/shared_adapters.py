"""PEFT adapters attached to the one shared base model of the hf backend, instead of a
deep copy of its weights per cell (an 8B model in bf16 is 16 GB a copy).

Rules that keep every other user of the shared model unaffected:
- `attach` injects a PEFT tuner (LoRA, DoRA, IA3: `peft.functional.inject_adapter_in_model`)
  under a name of its own and returns an `AdapterView`: a module whose forward and
  generate run the shared model with that adapter, and only that one, switched on;
- every other forward of the shared model (the prompting cells, the forgetting probe's
  base, lm-eval in `bench perf`, a soft prompt in front of the base) runs with every
  adapter switched off: a forward pre-hook on the shared model sets the adapters of
  whoever called, so a forgotten switch cannot leak one cell's adapter into another;
- a disabled PEFT layer returns its base layer's output unchanged, so base results are
  the same while adapters are attached (to float rounding: a matmul can round the last
  bit differently at another memory alignment; tests/strategies/test_training_shared.py);
- when the view is garbage (its cell's artifacts dropped), its adapter is deleted and
  every PEFT layer left without adapters is replaced by the base layer it wrapped; once
  the last adapter goes, the hook and `peft_config` go too: the model is the loaded one;
- `clean_copy` is the private copy full fine-tuning (and QLoRA, and the merged latency
  variant) needs: the base without any attached adapter.
"""
from __future__ import annotations

import copy
import itertools
import weakref
from pathlib import Path
from typing import Any

import torch

_COUNTER = itertools.count(1)
_STATE = "_adaptbench_adapters"  # on the shared model: {"live": {name: config}, "active": name, "hook": handle}


def _tuner_layers(model: Any) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def _holds(layer: Any, name: str) -> bool:
    return any(name in getattr(layer, attr) for attr in layer.adapter_layer_names)


def activate(model: Any, name: str | None) -> None:
    """Switch `name` on in every PEFT layer that holds it and everything else off
    (None: all off). A no-op when nothing changes, so it costs nothing per step."""
    state = getattr(model, _STATE, None)
    if state is None or state["active"] == name:
        return
    for layer in state["layers"]:
        if name is not None and _holds(layer, name):
            layer.enable_adapters(True)
            layer.set_adapter(name)  # PEFT: gradients on for `name`, off for the layer's others
        else:
            layer.enable_adapters(False)  # PEFT: gradients off for the layer's adapters
    state["active"] = name


def _pre_hook(model: Any, args: Any, kwargs: Any) -> None:
    state = getattr(model, _STATE)
    activate(model, state["caller"])


def attach(model: Any, peft_config: Any, label: str) -> "AdapterView":
    """Inject a fresh adapter into `model` (weights unchanged) and return its view."""
    from peft.functional import inject_adapter_in_model

    from strategies.training import quiet_peft

    name = f"{label.replace('-', '_')}_{next(_COUNTER)}"
    state = getattr(model, _STATE, None)
    if state is None:
        state = {"live": {}, "active": None, "caller": None, "layers": [],
                 "grad": {n: p.requires_grad for n, p in model.named_parameters()}}
        state["hook"] = model.register_forward_pre_hook(_pre_hook, with_kwargs=True)
        setattr(model, _STATE, state)
    if getattr(peft_config, "base_model_name_or_path", None) is None:
        peft_config.base_model_name_or_path = getattr(model, "name_or_path", None)
    with quiet_peft():
        inject_adapter_in_model(peft_config, model, adapter_name=name)
    state["live"][name] = peft_config
    model.peft_config = dict(state["live"])  # PEFT's state-dict helpers read it; injecting overwrote it
    state["layers"] = _tuner_layers(model)
    state["active"] = object()  # unknown after injecting: the next call sets it
    activate(model, None)
    return AdapterView(model, name)


def detach(model: Any, name: str) -> None:
    """Delete adapter `name` and unwrap the layers it leaves empty."""
    state = getattr(model, _STATE, None)
    if state is None or name not in state["live"]:
        return
    from strategies.training import quiet_peft

    with quiet_peft():
        _delete(model, name)
    del state["live"][name]
    state["layers"] = _tuner_layers(model)
    state["active"] = object()
    if state["live"]:
        model.peft_config = dict(state["live"])
        activate(model, None)
        return
    # The last one: the model as loaded, without hook, PEFT attributes or changed gradient flags.
    state["hook"].remove()
    delattr(model, _STATE)
    if hasattr(model, "peft_config"):
        del model.peft_config
    for pname, param in model.named_parameters():
        param.requires_grad_(state["grad"].get(pname, param.requires_grad))


def _delete(module: Any, name: str) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for child_name, child in list(module.named_children()):
        _delete(child, name)  # a tuner nested inside another one first
        if isinstance(child, BaseTunerLayer):
            if _holds(child, name):
                child.delete_adapter(name)
            if not any(len(getattr(child, attr)) for attr in child.adapter_layer_names):
                setattr(module, child_name, child.base_layer)


def attached(model: Any) -> list[str]:
    state = getattr(model, _STATE, None)
    return sorted(state["live"]) if state else []


def clean_copy(model: Any) -> Any:
    """A private copy of the base weights without any attached adapter."""
    twin = _twin(model)
    _unwrap_all(twin)
    return twin


def _unwrap_all(module: Any, merge: str | None = None) -> None:
    """Replace every PEFT layer by the base layer it wraps, merging adapter `merge` first."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for child_name, child in list(module.named_children()):
        if isinstance(child, BaseTunerLayer):
            layer = child
            while merge is not None and isinstance(layer, BaseTunerLayer):  # nested tuners: ours may be inside
                if _holds(layer, merge):
                    layer.merge(adapter_names=[merge])
                layer = layer.base_layer
            setattr(module, child_name, child.get_base_layer())
        else:
            _unwrap_all(child, merge)


def _twin(model: Any) -> Any:
    """A deep copy of `model` without the shared state (hook, live adapters)."""
    state = getattr(model, _STATE, None)
    if state is None:
        return copy.deepcopy(model)
    delattr(model, _STATE)
    hook = state.pop("hook")
    try:
        twin = copy.deepcopy(model)
    finally:
        state["hook"] = hook
        setattr(model, _STATE, state)
    twin._forward_pre_hooks.clear()
    twin._forward_pre_hooks_with_kwargs.clear()
    if hasattr(twin, "peft_config"):
        del twin.peft_config
    return twin


class AdapterView(torch.nn.Module):
    """The shared model with one adapter switched on: what training and predictions run."""

    def __init__(self, model: Any, name: str) -> None:
        super().__init__()
        self.shared = model  # a submodule: parameters() and train()/eval() reach it
        self.adapter_name = name
        weakref.finalize(self, detach, model, name).atexit = False

    def __getattr__(self, attr: str) -> Any:
        try:
            return super().__getattr__(attr)
        except AttributeError:
            return getattr(super().__getattr__("shared"), attr)  # config, generation_config, device ...

    def _call(self, fn, *args, **kwargs):
        state = getattr(self.shared, _STATE)
        state["caller"] = self.adapter_name
        try:
            return fn(*args, **kwargs)
        finally:
            state["caller"] = None

    def forward(self, *args, **kwargs):
        return self._call(self.shared, *args, **kwargs)

    def generate(self, *args, **kwargs):
        return self._call(self.shared.generate, *args, **kwargs)

    def trainable(self) -> None:
        """Gradients on this adapter's weights only (the shared weights stay frozen)."""
        marker = f".{self.adapter_name}"
        for pname, param in self.shared.named_parameters():
            param.requires_grad_(marker + "." in pname or pname.endswith(marker))

    # -- what strategies/training.py saves, fingerprints and merges -----------------
    def adapter_state(self) -> dict[str, Any]:
        from peft.functional import get_peft_model_state_dict

        # PeftModel's key names (`base_model.model.` + module path), so the file and the
        # weights fingerprint are the ones a PeftModel over a copy would give.
        state = get_peft_model_state_dict(self.shared, adapter_name=self.adapter_name)
        return {f"base_model.model.{k}": v for k, v in state.items()}

    def save_pretrained(self, folder: str, safe_serialization: bool = True) -> None:
        """PEFT's own layout (adapter_config.json + adapter_model.safetensors, keys under
        `base_model.model.`), so PeftModel.from_pretrained and vLLM read it."""
        from safetensors.torch import save_file

        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.adapter_state().items()}
        save_file(state, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
        config = self.shared.peft_config[self.adapter_name]
        mode, config.inference_mode = config.inference_mode, True  # as PeftModel.save_pretrained writes it
        try:
            config.save_pretrained(str(path))
        finally:
            config.inference_mode = mode

    def merge_and_unload(self) -> Any:
        """A private copy of the base with this adapter merged into its weights (the
        merged latency variant: one model per adapter is what merging means)."""
        from strategies.training import quiet_peft

        twin = _twin(self.shared)
        with quiet_peft():
            _unwrap_all(twin, merge=self.adapter_name)
        return twin.eval()


def load(model: Any, folder: Path, label: str) -> AdapterView:
    """Attach the adapter `AdapterView.save_pretrained` (or PeftModel) wrote to `folder`."""
    from peft import PeftConfig
    from peft.functional import set_peft_model_state_dict
    from safetensors.torch import load_file

    config = PeftConfig.from_pretrained(str(folder))
    config.inference_mode = True
    view = attach(model, config, label)
    raw = load_file(str(Path(folder) / "adapter_model.safetensors"))
    state = {k.removeprefix("base_model.model."): v for k, v in raw.items()}
    result = set_peft_model_state_dict(model, state, adapter_name=view.adapter_name)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ValueError(f"adapter in {folder} does not fit the model (unexpected {unexpected[:3]})")
    return view.eval()



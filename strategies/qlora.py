"""QLoRA: LoRA adapters trained over a 4-bit NF4 copy of the base weights
(bitsandbytes `Linear4bit`, bf16 compute), the memory-saving recipe of Dettmers et al.
2023. The adapter itself is a LoRA adapter in float32; only the frozen base is 4-bit.

CUDA only. bitsandbytes' CPU backend is not installed here (and the bench cannot
verify it trains correctly), so on a machine without CUDA, or without bitsandbytes,
`build` raises a clear error before any model loads: never a silent fall-back to
plain LoRA, which would report LoRA's numbers under QLoRA's name. There is no merged
latency variant: merging into a 4-bit base would round the adapter away.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from bench.errors import BenchError
from bench.options import config_from
from strategies import training
from strategies.base import StrategyDef
from strategies.lora import LoraStrategyConfig, lora_config


@dataclass(frozen=True)
class QLoraConfig(LoraStrategyConfig):
    PREFIX: ClassVar[str] = "qlora"


def require_cuda(device: str | None = None) -> None:
    import torch

    if not torch.cuda.is_available() or (device is not None and not str(device).startswith("cuda")):
        raise BenchError("qlora needs a CUDA GPU (bitsandbytes 4-bit NF4 weights); this run has none"
                         f"{'' if device is None else f' (device {device})'}. Use lora on a CPU, or run on a GPU.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise BenchError("qlora needs bitsandbytes: pip install 'adaptbench[qlora]' (or bitsandbytes)")


def quantized_copy(lm: Any) -> Any:
    """A copy of the base with every linear layer but the LM head in 4-bit NF4, on CUDA."""
    import bitsandbytes as bnb
    import torch

    require_cuda(lm.device)
    from bench.backends.shared_adapters import clean_copy

    model = clean_copy(lm.torch_model).to("cpu")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and name != "lm_head":
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(child.weight.data.float(), requires_grad=False, quant_type="nf4")
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                setattr(parent, name, q)
    model = model.to(lm.device)  # moving Params4bit to CUDA quantizes them
    model.is_loaded_in_4bit = True  # PEFT then wraps Linear4bit layers with its bnb LoRA layers
    return model


def wrap(model: Any, cfg: Any, task: Any, lm: Any) -> Any:
    from peft import get_peft_model

    for param in model.parameters():
        param.requires_grad_(False)
    with training.quiet_peft():
        return get_peft_model(model, lora_config(cfg))


def reload(model: Any, folder: Path) -> Any:
    return training.peft_model_reload(model, folder)


METHOD = training.Method("qlora", wrap, reload, training.peft_save, training.peft_state, merge=None,
                         copy_base=quantized_copy, dtype=lambda model, device: "nf4 base, bf16 compute")


def build(options: Mapping[str, Any] | None = None) -> training.TrainedStrategy:
    config = config_from(QLoraConfig, options or {}, "strategies.qlora")
    require_cuda()  # before any model loads
    return training.TrainedStrategy("qlora", METHOD, config)


STRATEGY = StrategyDef(
    name="qlora", config=QLoraConfig, build=build, predict_batch="predict_batch_size",
    code=("strategies.qlora", "strategies.lora", *training.CODE), artifacts=training.WeightsStore("qlora", METHOD),
    needs=frozenset({"trainable"}), resources=training.RESOURCES, changes_weights=True, learns_from_train=True)

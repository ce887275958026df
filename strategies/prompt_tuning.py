"""Prompt tuning: a few learned "virtual token" embeddings in front of every prompt; the
model's weights stay frozen (PEFT `PromptTuningConfig`, Lester et al. 2021).

- The virtual tokens start as the embeddings of the task's instruction text (repeated
  or cut to `num_virtual_tokens`), which is what PEFT's TEXT init does; it is done here
  from the backend's own tokenizer, because PEFT would load a tokenizer from the hub.
- `SoftPromptModel` puts the virtual tokens in front itself, so the hf backend's label
  scoring (prompt once, then each label from the KV cache) and training see them the
  same way: on the first pass only, positions shifted by their count. PEFT's own
  forward would prepend them again on every cached step. Generation goes through the
  base model with the same layout, so left padding shifts no position.
- Learning rate 3e-2: soft prompts need large steps (PEFT's examples use 3e-2).
- Packing is off: virtual tokens start a row, so sequences cannot share one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from bench.options import config_from
from strategies import training, training_config
from strategies.base import StrategyDef


@dataclass(frozen=True)
class PromptTuningConfig(training_config.TrainingConfig):
    PREFIX: ClassVar[str] = "prompt-tuning"
    learning_rate: float = 3e-2
    num_virtual_tokens: int = 16
    init: str = "instruction"  # instruction | random

    def __post_init__(self) -> None:
        training_config.check_training(self, ints={"num_virtual_tokens": 1})
        if self.init not in ("instruction", "random"):
            raise training_config.bad(self, "init", "instruction or random")
        if self.packing is True:
            raise training_config.bad(self, "packing", "false or auto (virtual tokens start a row)")
        object.__setattr__(self, "packing", False)


def soft_prompt_model(peft_model: Any):
    import torch

    class SoftPromptModel(torch.nn.Module):
        """The frozen base model with the trained virtual tokens in front of each input."""

        def __init__(self, peft: Any) -> None:
            super().__init__()
            self.peft = peft

        @property
        def generation_config(self):
            return self.peft.get_base_model().generation_config

        @property
        def n_virtual(self) -> int:
            return self.peft.active_peft_config.num_virtual_tokens

        def forward(self, input_ids, attention_mask=None, position_ids=None, **kw):
            base, v, n = self.peft.get_base_model(), self.n_virtual, input_ids.shape[0]
            cache = kw.get("cache", kw.get("past_key_values"))
            if attention_mask is not None:  # the cache (or this pass) holds the virtual tokens too
                attention_mask = torch.cat([attention_mask.new_ones(n, v), attention_mask], 1)
            if position_ids is not None:
                position_ids = position_ids + v
            if cache is not None and cache.get_seq_length() > 0:
                return base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kw)
            embeds = base.get_input_embeddings()(input_ids)
            embeds = torch.cat([self.peft.get_prompt(batch_size=n).to(embeds.dtype), embeds], 1)
            if position_ids is not None:
                virtual = torch.arange(v, device=position_ids.device).expand(n, v)
                position_ids = torch.cat([virtual, position_ids], 1)
            return base(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, **kw)

        def generate(self, input_ids, attention_mask, **kw):
            """[virtual | padding | prompt] as embeddings; generate derives the positions from
            the mask (virtual tokens 0..v-1, the prompt from v on, padding skipped), as training
            and label scoring see them. PEFT's own generate puts the padding between the
            virtual tokens and the prompt's positions, so a prompt's answer depended on how
            long the other prompts of its batch were. Returns ids in PEFT's layout: the
            input ids, then the new tokens."""
            base, v, n = self.peft.get_base_model(), self.n_virtual, input_ids.shape[0]
            embeds = base.get_input_embeddings()(input_ids)
            embeds = torch.cat([self.peft.get_prompt(batch_size=n).to(embeds.dtype), embeds], 1)
            mask = torch.cat([attention_mask.new_ones(n, v), attention_mask], 1)
            out = base.generate(inputs_embeds=embeds, attention_mask=mask, **kw)
            if isinstance(out, torch.Tensor):
                return torch.cat([input_ids, out.to(input_ids.device)], 1)
            out.sequences = torch.cat([input_ids, out.sequences.to(input_ids.device)], 1)
            return out

    return SoftPromptModel(peft_model)


def wrap(model: Any, cfg: PromptTuningConfig, task: Any, lm: Any) -> Any:
    import torch
    from peft import PromptTuningConfig as PeftPromptTuningConfig, get_peft_model

    with training.quiet_peft():
        peft = get_peft_model(model, PeftPromptTuningConfig(task_type="CAUSAL_LM",
                                                            num_virtual_tokens=cfg.num_virtual_tokens))
    if cfg.init == "instruction":
        ids = lm.encode(task.instruction.strip()) or [lm.pad_token_id]
        ids = (ids * (cfg.num_virtual_tokens // len(ids) + 1))[:cfg.num_virtual_tokens]
        table = model.get_input_embeddings()
        with torch.no_grad():
            start = table(torch.tensor(ids, device=table.weight.device)).detach().clone()
            peft.prompt_encoder[peft.active_adapter].embedding.weight.copy_(start.float())
    return soft_prompt_model(peft)


def reload(model: Any, folder: Path) -> Any:
    return soft_prompt_model(training.peft_model_reload(model, folder))


METHOD = training.Method("prompt-tuning", wrap, reload, save=lambda m, folder: training.peft_save(m.peft, folder),
                         state=lambda m: training.peft_state(m.peft))


def build(options: Mapping[str, Any] | None = None) -> training.TrainedStrategy:
    return training.TrainedStrategy("prompt-tuning", METHOD, config_from(PromptTuningConfig, options or {},
                                                                         "strategies.prompt-tuning"))


STRATEGY = StrategyDef(
    name="prompt-tuning", config=PromptTuningConfig, build=build, predict_batch="predict_batch_size",
    code=("strategies.prompt_tuning", *training.CODE), artifacts=training.WeightsStore("prompt-tuning", METHOD),
    needs=frozenset({"trainable"}), resources=training.RESOURCES, changes_weights=True, learns_from_train=True)

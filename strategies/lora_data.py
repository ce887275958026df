"""The LoRA data path: (prompt, answer) pairs -> token sequences -> padded batches -> loss.

Rules that keep training and prediction consistent:
- A training sequence is the zero-shot prompt that `predict` will use, then the target
  and the end-of-answer marker, each tokenized on its own and concatenated, exactly as
  `score_choices` (the hf backend) scores a label after a prompt.
- Only answer tokens carry a loss (labels are -100 on prompt and padding).
- Batches are left-padded, so every answer sits at the right edge of its row: the LM
  head then only runs on the last few positions (`logits_to_keep`), which is where
  most of a step's time would otherwise go on a small model with a big vocabulary.
  Position ids are passed explicitly so left padding changes nothing numerically.
- Packing (`pack`, used on GPUs) puts a batch's sequences end to end in one row with
  position ids restarting at 0 for each and no attention mask: transformers then
  builds a block-diagonal causal mask (SDPA, eager) or runs variable-length
  FlashAttention, so no sequence sees another and no token is padding.
- `collate(pad_to=...)` and `batch_loss(all_logits=True)` exist for `bench perf`'s
  plain baseline (every batch padded to max_length, the LM head at every position).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from strategies.prompts import build_prompt, reserve_tokens

if TYPE_CHECKING:
    from bench.lm import TrainableLM
    from tasks.model import Document, Example, Task

IGNORE = -100


@dataclass(frozen=True)
class TrainSeq:
    """One training sequence; its last `n_labels` tokens are the ones with a loss."""

    ids: tuple[int, ...]
    n_labels: int


def encode_pair(model: "TrainableLM", prompt: str, answer: str, max_length: int) -> TrainSeq:
    prompt_ids, answer_ids = model.encode(prompt), model.encode(answer)
    # An answer longer than the window keeps its start; the prompt keeps its end
    # (the question and the answer cue), as the hf backend does at prediction time.
    answer_ids = answer_ids[:max_length - 1]
    prompt_ids = prompt_ids[-(max_length - len(answer_ids)):]
    return TrainSeq(tuple(prompt_ids + answer_ids), len(answer_ids))


def encode_examples(model: "TrainableLM", task: "Task", examples: Sequence["Example"],
                    max_length: int) -> list[TrainSeq]:
    reserve = reserve_tokens(task)
    return [encode_pair(model, build_prompt(model, task, ex.input, reserve=reserve),
                        ex.target + model.end_of_answer, max_length) for ex in examples]


def encode_corpus(model: "TrainableLM", documents: Sequence["Document"], max_length: int) -> list[TrainSeq]:
    """Documents as plain language-model data, cut into windows of max_length tokens;
    every token but a window's first is predicted."""
    out = []
    for doc in documents:
        ids = model.encode(f"{doc.title}\n{doc.text}" if doc.title else doc.text)
        for start in range(0, len(ids), max_length):
            window = ids[start:start + max_length]
            if len(window) > 1:
                out.append(TrainSeq(tuple(window), len(window) - 1))
    return out


def length_batches(items: Sequence[TrainSeq], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding). With an rng, items
    are shuffled, sorted within pools of 8 batches, and the batches shuffled, so every
    epoch sees a different order; without one (validation) the order is fixed."""
    order = list(range(len(items)))
    if rng is None:
        order.sort(key=lambda i: len(items[i].ids))
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    rng.shuffle(order)
    pool = batch_size * 8
    batches = []
    for p in range(0, len(order), pool):
        chunk = sorted(order[p:p + pool], key=lambda i: len(items[i].ids))
        batches += [chunk[s:s + batch_size] for s in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(items: Sequence[TrainSeq], pad_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Left-padded ids, attention mask, position ids and labels (-100 outside answers).
    `pad_to` widens every batch to that many columns (the padded baseline)."""
    width = max(max(len(it.ids) for it in items), pad_to or 0)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for row, it in enumerate(items):
        seq = torch.tensor(it.ids, dtype=torch.long)
        ids[row, width - len(seq):] = seq
        mask[row, width - len(seq):] = 1
        labels[row, width - it.n_labels:] = seq[len(seq) - it.n_labels:]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels}


def pack(items: Sequence[TrainSeq]) -> dict[str, torch.Tensor]:
    """The sequences end to end in one row, positions restarting per sequence. The
    all-ones mask only counts tokens; `batch_loss` drops it so the model sees packing."""
    ids = torch.tensor([t for it in items for t in it.ids], dtype=torch.long)[None]
    positions = torch.cat([torch.arange(len(it.ids)) for it in items])[None]
    labels = torch.full_like(ids, IGNORE)
    end = 0
    for it in items:
        end += len(it.ids)
        labels[0, end - it.n_labels:end] = ids[0, end - it.n_labels:end]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "position_ids": positions, "labels": labels}


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled positions, and their count.
    `logits` cover the last `logits.shape[1]` positions of `labels`' rows."""
    keep = logits.shape[1]
    targets = labels[:, labels.shape[1] - keep + 1:]
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())


def batch_loss(model, batch: dict[str, torch.Tensor], device: str,
               all_logits: bool = False) -> tuple[torch.Tensor, int]:
    """Forward one collated or packed batch; the LM head runs only on positions that
    predict a labelled token (all positions with `all_logits`, the plain baseline)."""
    labels = batch["labels"].to(device)
    mask = batch["attention_mask"]
    # No padding: no mask. Equivalent, and it is how transformers recognises packed rows.
    mask = None if bool(mask.all()) else mask.to(device)
    inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": mask,
              "position_ids": batch["position_ids"].to(device), "use_cache": False}
    if all_logits:
        return token_losses(model(**inputs, logits_to_keep=0).logits, labels)
    predicts = labels[:, 1:] != IGNORE  # position t predicts token t + 1
    if mask is None and int(predicts.any(0).sum()) < labels.shape[1] // 2:
        # Labels scattered along the row (packing): keep exactly the positions needed.
        where = predicts.any(0).nonzero().squeeze(1)
        logits = model(**inputs, logits_to_keep=where).logits
        return _loss_at(logits, labels[:, where + 1])
    first = int((labels != IGNORE).float().argmax(dim=1).min())  # first labelled column of any row
    keep = min(labels.shape[1] - first + 1, labels.shape[1])
    return token_losses(model(**inputs, logits_to_keep=keep).logits, labels)


def _loss_at(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())

"""The LoRA data path: (prompt, answer) pairs -> token sequences -> padded batches -> loss.

Rules that keep training and prediction consistent:
- A training sequence is the zero-shot prompt that `predict` will use, then the target
  and the end-of-answer marker, each tokenized on its own and concatenated, exactly as
  `ModelHandle.score_choices` scores a label after a prompt.
- Only answer tokens carry a loss (labels are -100 on prompt and padding).
- Batches are left-padded, so every answer sits at the right edge of its row: the LM
  head then only runs on the last few positions (`logits_to_keep`), which is where
  most of a step's time would otherwise go on a small model with a big vocabulary.
  Position ids are passed explicitly so left padding changes nothing numerically.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from strategies.prompts import build_prompt, reserve_tokens

if TYPE_CHECKING:
    from bench.generation import ModelHandle
    from tasks.model import Document, Example, Task

IGNORE = -100


@dataclass(frozen=True)
class TrainSeq:
    """One training sequence; its last `n_labels` tokens are the ones with a loss."""

    ids: tuple[int, ...]
    n_labels: int


def encode_pair(model: "ModelHandle", prompt: str, answer: str, max_length: int) -> TrainSeq:
    prompt_ids, answer_ids = model.encode(prompt), model.encode(answer)
    # An answer longer than the window keeps its start; the prompt keeps its end
    # (the question and the answer cue), as ModelHandle._fit does at prediction time.
    answer_ids = answer_ids[:max_length - 1]
    prompt_ids = prompt_ids[-(max_length - len(answer_ids)):]
    return TrainSeq(tuple(prompt_ids + answer_ids), len(answer_ids))


def encode_examples(model: "ModelHandle", task: "Task", examples: Sequence["Example"],
                    max_length: int) -> list[TrainSeq]:
    reserve = reserve_tokens(task)
    return [encode_pair(model, build_prompt(model, task, ex.input, reserve=reserve),
                        ex.target + model.end_of_answer, max_length) for ex in examples]


def encode_corpus(model: "ModelHandle", documents: Sequence["Document"], max_length: int) -> list[TrainSeq]:
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


def collate(items: Sequence[TrainSeq], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded ids, attention mask, position ids and labels (-100 outside answers)."""
    width = max(len(it.ids) for it in items)
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


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled positions, and their count.
    `logits` cover the last `logits.shape[1]` positions of `labels`' rows."""
    keep = logits.shape[1]
    targets = labels[:, labels.shape[1] - keep + 1:]
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())


def batch_loss(model, batch: dict[str, torch.Tensor], device: str) -> tuple[torch.Tensor, int]:
    """Forward one collated batch; the LM head runs only where labels start or later."""
    labels = batch["labels"]
    labelled = (labels != IGNORE).float().argmax(dim=1)  # first labelled column per row
    keep = labels.shape[1] - int(labelled.min()) + 1
    keep = min(keep, labels.shape[1])
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                position_ids=batch["position_ids"].to(device), use_cache=False, logits_to_keep=keep)
    return token_losses(out.logits, labels.to(device))

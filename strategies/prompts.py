"""Plain functions every strategy shares: how a task becomes a prompt, and how
prompts become predictions. Strategies differ only in what they put in the prompt
(demonstrations, passages) or in the weights they run it through."""
from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Callable, Sequence

from strategies.base import Prediction

if TYPE_CHECKING:
    from bench.lm import LM
    from tasks.model import Example, Task

QA_STYLE = "Answer with a short phrase only, no full sentence."


def user_message(task: "Task", text: str, passages: Sequence[str] = ()) -> str:
    """The user turn for one input: instruction, options, optional context, input."""
    parts = [task.instruction.strip()]
    if task.kind == "classification":
        parts.append("Options: " + ", ".join(task.labels) + ".")
    elif task.kind == "qa":
        parts.append(QA_STYLE)
    if passages:
        parts.append("Context:\n" + "\n\n".join(f"[{i + 1}] {p.strip()}" for i, p in enumerate(passages)))
    label = "Question" if task.kind == "qa" else "Input"
    parts.append(f"{label}: {text.strip()}")
    return "\n\n".join(parts)


def labelled_subset(train: Sequence["Example"], cap: int | None, seed: int) -> list["Example"]:
    """The train examples a strategy may learn from under a cap: the first `cap` of one
    seeded order of the whole split, so with one seed a smaller cap is a prefix of a
    larger one (a learning curve's 50 examples are among its 200). No cap, or one at
    least the split's size: the split as it is."""
    train = list(train)
    if cap is None or cap >= len(train):
        return train
    random.Random(seed).shuffle(train)  # `sample(train, k)` would not nest: its method depends on k
    return train[:cap]


def pick_demos(train: Sequence["Example"], k: int, seed: int, labels: Sequence[str] = ()) -> list["Example"]:
    """k seeded demonstrations from train, balanced across `labels` when given, so a
    prompt does not teach a majority label."""
    if k == 0 or not train:
        return []
    rng = random.Random(seed)
    if not labels:
        return rng.sample(list(train), min(k, len(train)))
    by_label = {label: [ex for ex in train if ex.target == label] for label in labels}
    for pool in by_label.values():
        rng.shuffle(pool)
    demos: list = []
    while len(demos) < k and any(by_label.values()):
        for label in labels:
            if by_label[label] and len(demos) < k:
                demos.append(by_label[label].pop())
    rng.shuffle(demos)
    return demos


def shots_for(task: "Task", demos: Sequence["Example"]) -> list[tuple[str, str]]:
    return [(user_message(task, d.input), d.target) for d in demos]


def build_prompt(model: "LM", task: "Task", text: str, demos: Sequence["Example"] = (),
                 passages: Sequence[str] = (), reserve: int = 0,
                 shots: Sequence[tuple[str, str]] | None = None) -> str:
    """Render one prompt; passages are dropped from the end while it does not fit.
    `shots` are ready-made (user, answer) turns, used instead of `demos`."""
    passages = list(passages)
    room = model.max_context - reserve
    turns = list(shots) if shots is not None else shots_for(task, demos)
    while True:
        prompt = model.render(user_message(task, text, passages), turns)
        if not passages or model.count_tokens(prompt) <= room:
            return prompt
        passages.pop()


def clean_answer(task: "Task", text: str) -> str:
    """First line of a generated answer, without a trailing full stop or label prefix."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"^(answer|a)\s*:\s*", "", line, flags=re.I).strip()
    return line.rstrip(".").strip()


def reserve_tokens(task: "Task") -> int:
    """Tokens to keep free after the prompt: the answer."""
    return task.max_new_tokens if task.kind != "classification" else 8


def predict_prompts(model: "LM", task: "Task", examples: Sequence["Example"],
                    prompts: Sequence[str], batch_size: int = 8,
                    retrieved: Sequence[tuple[str, ...]] | None = None,
                    extra_latency: Sequence[float] | None = None,
                    progress: Callable[[int], None] | None = None) -> list[Prediction]:
    """Answer ready-made prompts: label scoring for classification, greedy generation
    otherwise. `extra_latency` adds per-query time spent before the model (retrieval)."""
    retrieved = retrieved or [()] * len(examples)
    extra = extra_latency or [0.0] * len(examples)
    if task.kind == "classification":
        scored = model.score_choices(prompts, list(task.labels), batch_size=batch_size * 2, progress=progress)
        # The label is known once every choice is scored: its first token is the whole answer.
        return [Prediction(ex.id, task.labels[s.best], s.latency_s + x, s.prompt_tokens, 0, r, s.truncated,
                           first_token_s=s.latency_s + x, retrieval_s=x, scoring=s.method)
                for ex, s, r, x in zip(examples, scored, retrieved, extra)]
    generated = model.generate(prompts, max_new_tokens=task.max_new_tokens, batch_size=batch_size,
                               progress=progress)
    return [Prediction(ex.id, clean_answer(task, g.text), g.latency_s + x, g.prompt_tokens,
                       g.completion_tokens, r, g.truncated,
                       first_token_s=None if g.first_token_s is None else g.first_token_s + x, retrieval_s=x,
                       scoring="generate")
            for ex, g, r, x in zip(examples, generated, retrieved, extra)]

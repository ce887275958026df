"""Prompts as a model expects them, shared by every backend that renders locally.

With a chat template the prompt is the conversation rendered by the model's own
tokenizer, ending where the answer starts; without one it is plain text with an
`Answer:` cue. No torch here: a server backend renders with just the tokenizer.
"""
from __future__ import annotations

from typing import Any, Sequence


def messages(user: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None) -> list[dict]:
    out = [{"role": "system", "content": system}] if system else []
    for question, answer in shots:
        out += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    out.append({"role": "user", "content": user})
    return out


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer: Any, user: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None) -> str:
    """`shots` are (user, assistant) demonstration turns placed before `user`."""
    if tokenizer is not None and has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages(user, shots, system), tokenize=False,
                                             add_generation_prompt=True)
    return plain(user, shots, system)


def plain(user: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None) -> str:
    text = f"{system}\n\n" if system else ""
    text += "".join(f"{q}\nAnswer: {a}\n\n" for q, a in shots)
    return text + f"{user}\nAnswer: "


def end_of_answer(tokenizer: Any) -> str:
    """What the model writes after an answer (the chat turn end, or EOS)."""
    if tokenizer is None:
        return "\n"
    if has_chat_template(tokenizer) and "<|im_end|>" in (tokenizer.chat_template or ""):
        return "<|im_end|>"
    return tokenizer.eos_token or "\n"

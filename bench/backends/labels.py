"""Choosing a label from a server's answer: summed log-probabilities of the label's
tokens in an echoed prompt, or (without them) the label a generated answer names."""
from __future__ import annotations

import difflib
import math
import re
from typing import Sequence


class NoPromptLogprobs(Exception):
    """The server cannot return prompt log-probabilities (detected once per backend)."""


def label_logprob(logprobs: dict, prompt_chars: int, full_chars: int) -> tuple[float, int]:
    """(summed log-probability of the tokens overlapping the label, tokens before it)."""
    offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
    if not offsets or not values or len(offsets) != len(values):
        raise NoPromptLogprobs("the server returned no prompt log-probabilities")
    total, n_prompt, found = 0.0, 0, False
    for i, (start, value) in enumerate(zip(offsets, values)):
        end = offsets[i + 1] if i + 1 < len(offsets) else math.inf
        if start >= full_chars:
            break  # the generated token after the echo
        if end <= prompt_chars:
            n_prompt += 1
            continue
        if value is None:
            raise NoPromptLogprobs("the label's first token has no log-probability")
        total, found = total + float(value), True
    if not found:
        raise NoPromptLogprobs("no token of the label came back")
    return total, n_prompt


def match_label(text: str, labels: Sequence[str]) -> int:
    """The label a generated answer names: exact, then prefix, then the earliest
    mentioned, then the closest spelling (index 0 when nothing is close)."""
    norm = lambda s: re.sub(r"[^\w\s-]", "", s.lower()).strip()  # noqa: E731
    said, names = norm(text), [norm(label) for label in labels]
    for test in (lambda n: said == n, lambda n: said.startswith(n)):
        hits = [j for j, n in enumerate(names) if test(n)]
        if hits:
            return max(hits, key=lambda j: len(names[j]))
    places = [(m.start(), j) for j, n in enumerate(names) if (m := re.search(rf"\b{re.escape(n)}\b", said))]
    if places:
        return min(places)[1]
    close = difflib.get_close_matches(said.split()[0] if said.split() else "", names, n=1, cutoff=0.6)
    return names.index(close[0]) if close else 0

"""Per-example scores: accuracy, and SQuAD's exact match and token F1.

The answer normalisation is SQuAD v1.1's official one: lower-case, drop punctuation
and the articles a/an/the, collapse whitespace.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def _f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    return max((_f1(prediction, a) for a in answers), default=0.0)


def accuracy(prediction: str, answers: Sequence[str]) -> float:
    return float(prediction.strip() in {a.strip() for a in answers})


METRIC_FUNCTIONS = {"accuracy": accuracy, "exact_match": exact_match, "f1": token_f1}


def score_example(metric: str, prediction: str, answers: Sequence[str]) -> dict[str, float]:
    """The task metric as `score`, plus the companion metrics worth storing."""
    if metric == "accuracy":
        return {"score": accuracy(prediction, answers)}
    em, f1 = exact_match(prediction, answers), token_f1(prediction, answers)
    return {"score": em if metric == "exact_match" else f1, "exact_match": em, "f1": f1}


def train_answer_facts(task) -> dict:
    """What the reports' trivial baselines need, for the manifest's task entry: the train
    label counts (classification) or the most frequent train answer (QA); reports read
    only the run folder, so the runner stores them."""
    from collections import Counter

    counts = Counter(ex.target for ex in task.train)
    if task.kind == "classification":
        return {"labels": list(task.labels), "train_label_counts": {lab: counts.get(lab, 0) for lab in task.labels}}
    top = counts.most_common(1)
    return {"train_top_answer": top[0][0], "train_top_answer_n": top[0][1]} if top else {}

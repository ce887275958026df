"""SQuAD v1.1 dev: extractive questions over Wikipedia paragraphs.

The data is `squad_shifts/squaddev_v1.1.json` from the bigbench sdist (48 articles,
2,067 paragraphs, 10,565 questions); bigbench itself is never installed.

Choices, and why:
- The input is the question alone and the paragraphs form the corpus: prompting
  answers closed-book, RAG must retrieve the paragraph (recall@k is measurable
  because `meta["doc_ids"]` names it), and LoRA learns from train questions.
- The split is by paragraph: a paragraph's questions all land on one side, or a
  model trained on one question could read the answer to its neighbour.
- Every distinct gold answer goes into `meta["answers"]` (SQuAD scores the best
  match over the annotators' answers); the target is the first annotator's.
- Test order is mixed across articles, so `--limit 50` is not 50 questions about
  one article (Super Bowl 50 comes first in the file).
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.assets import asset_path
from bench.errors import DataError
from tasks.model import Document, Example, Task
from tasks.splits import group_split, mix_order

NAME = "squad"
INSTRUCTION = "Answer the question with a short phrase."
MAX_NEW_TOKENS = 24


def doc_id(article: int, paragraph: int) -> str:
    return f"p{article:02d}-{paragraph:03d}"


def read_squad(path: Path) -> tuple[list[Document], list[Example]]:
    """Paragraphs as documents and questions as examples, in file order."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"not a SQuAD v1.1 file ({exc})", path=path) from None
    corpus: list[Document] = []
    examples: list[Example] = []
    for a, article in enumerate(data):
        title = article.get("title", "").replace("_", " ")
        for p, paragraph in enumerate(article["paragraphs"]):
            did = doc_id(a, p)
            corpus.append(Document(did, paragraph["context"], title))
            for qa in paragraph["qas"]:
                answers = list(dict.fromkeys(ans["text"].strip() for ans in qa["answers"] if ans["text"].strip()))
                if not answers:
                    continue
                question = " ".join(qa["question"].split())
                examples.append(Example(f"squad-{qa['id']}", question, answers[0],
                                        {"answers": answers, "doc_ids": [did], "title": title}))
    return corpus, examples


def load(seed: int = 0) -> Task:
    path = asset_path(NAME)
    corpus, examples = read_squad(path)
    train, validation, test = group_split(examples, group=lambda ex: ex.meta["doc_ids"][0], seed=seed)
    test = mix_order(test, key=lambda ex: ex.meta["title"], seed=seed)
    return Task(name=NAME, kind="qa", instruction=INSTRUCTION, train=train, validation=validation,
                test=test, corpus=corpus, metric="f1", source=f"asset:{NAME} ({path.name})",
                max_new_tokens=MAX_NEW_TOKENS)

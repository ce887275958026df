"""The task model: what every loader produces and every strategy consumes.

Rules:
- A `Task` is plain data; loaders build it, nothing mutates it afterwards.
- `Example.target` is the canonical answer (for classification, one of `Task.labels`).
  QA examples may accept several answers: `meta["answers"]` (the target included).
- Where the document that holds the answer is known, `meta["doc_ids"]` lists its ids,
  so retrieval can report recall@k.
- Example ids are unique within a task, across all splits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

KINDS = ("classification", "qa", "generation")
METRICS = ("accuracy", "exact_match", "f1")


@dataclass(frozen=True)
class Example:
    id: str
    input: str
    target: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def answers(self) -> list[str]:
        """Every acceptable answer; the target alone unless the task gave more."""
        return list(self.meta.get("answers") or [self.target])


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""


@dataclass
class Task:
    name: str
    kind: str
    instruction: str
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: tuple[str, ...] = ()
    corpus: list[Document] | None = None
    metric: str = "accuracy"
    # Where the data came from (file paths, asset names); goes into the manifest.
    source: str = ""
    # Generation budget for qa/generation tasks, in new tokens.
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.metric not in METRICS:
            raise ValueError(f"task {self.name!r}: metric must be one of {METRICS}, got {self.metric!r}")
        if self.kind == "classification" and len(self.labels) < 2:
            raise ValueError(f"task {self.name!r}: a classification task needs at least two labels")
        self.labels = tuple(self.labels)

    def split(self, name: str) -> list[Example]:
        if name not in ("train", "validation", "test"):
            raise ValueError(f"unknown split {name!r}; expected train, validation or test")
        return getattr(self, name)

    def split_hashes(self) -> dict[str, str]:
        """sha256 of each split's examples and of the corpus, for the manifest: which
        data a result came from, split by split."""
        import hashlib
        import json

        out = {}
        for split in ("train", "validation", "test"):
            h = hashlib.sha256()
            for ex in self.split(split):
                h.update(json.dumps([ex.id, ex.input, ex.target, dict(ex.meta)], sort_keys=True,
                                    default=str).encode())
            out[split] = h.hexdigest()
        if self.corpus:
            h = hashlib.sha256()
            for doc in self.corpus:
                h.update(json.dumps([doc.id, doc.title, doc.text]).encode())
            out["corpus"] = h.hexdigest()
        return out

    def fingerprint(self) -> str:
        """A content hash of everything a strategy could see; a cache key component."""
        import hashlib
        import json

        h = hashlib.sha256()
        head = {"name": self.name, "kind": self.kind, "instruction": self.instruction,
                "labels": self.labels, "metric": self.metric, "max_new_tokens": self.max_new_tokens}
        h.update(json.dumps(head, sort_keys=True).encode())
        for split in ("train", "validation", "test"):
            for ex in self.split(split):
                h.update(json.dumps([split, ex.id, ex.input, ex.target, dict(ex.meta)],
                                    sort_keys=True, default=str).encode())
        for doc in self.corpus or []:
            h.update(json.dumps(["doc", doc.id, doc.title, doc.text]).encode())
        return h.hexdigest()[:16]

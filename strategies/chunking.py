"""Cutting documents into passages for RAG: overlapping windows of the *embedder's*
tokens (so a chunk is never truncated by the embedder), cut from the original text so
its case and spacing survive."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    text: str
    start: int  # token window [start, end) within the document
    end: int


def windows(n_tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Token windows covering [0, n_tokens); consecutive windows share `overlap` tokens."""
    out, start = [], 0
    while start < n_tokens:
        end = min(start + size, n_tokens)
        out.append((start, end))
        if end == n_tokens:
            break
        start = end - overlap
    return out


def token_spans(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """Character span of each token: chunks are cut from the original text, keeping its
    case and spacing (decoding WordPiece ids would lowercase and re-space it)."""
    if tokenizer is None:  # an embedder without a tokenizer (a test double): words
        return [m.span() for m in re.finditer(r"\S+", text)]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [tuple(span) for span in enc["offset_mapping"]]


def chunk_documents(documents: Sequence[Any], tokenizer: Any, size: int, overlap: int) -> list[Chunk]:
    chunks = []
    for doc in documents:
        spans = token_spans(tokenizer, doc.text)
        for start, end in windows(len(spans), size, overlap):
            chunks.append(Chunk(doc.id, doc.text[spans[start][0]:spans[end - 1][1]], start, end))
    return chunks


def passage(title: str, text: str) -> str:
    # The title often names the subject the chunk never repeats (SQuAD, wiki pages).
    return f"{title}\n{text}" if title and not text.startswith(title) else text

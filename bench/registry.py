"""Explicit, lazy name -> "module:attr" tables with checked names.

Looking a name up imports only its module, so `bench --help` stays free of torch,
faiss and peft. A typo gets close-match suggestions.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Mapping

from bench.errors import BenchError


class Registry:
    def __init__(self, kind: str, table: Mapping[str, str]) -> None:
        self.kind = kind
        self._table = dict(table)

    def names(self) -> list[str]:
        return list(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def check(self, name: str) -> str:
        if name in self._table:
            return name
        close = difflib.get_close_matches(name, self._table, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise BenchError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self._table)}.")

    def load(self, name: str) -> Any:
        target = self._table[self.check(name)]
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)

"""Building config dataclasses from plain mappings (YAML data), with checked keys."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


def config_from(cls: type[T], options: Mapping[str, Any] | None, where: str) -> T:
    """`cls(**options)`, rejecting unknown keys by name; type errors become BenchError."""
    options = dict(options or {})
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - known)
    if unknown:
        import difflib

        hints = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u, known, 1)) else u
                 for u in unknown]
        raise BenchError(f"{where}: unknown option(s) {', '.join(hints)}; known: {', '.join(sorted(known))}")
    try:
        return cls(**options)
    except TypeError as exc:
        raise BenchError(f"{where}: {exc}") from exc

"""The one YAML loader: task specs, experiment configs, anything the bench reads as YAML.

Rules (YAML is data only, and a file may come from a pull request):
- only YAML's plain types (mappings, lists, strings, numbers, booleans, null, dates);
  a `!!python/...` or any other tag is refused, never constructed;
- bounded: at most `MAX_BYTES` of text, `MAX_DEPTH` levels of nesting, `MAX_ALIASES`
  aliases and `MAX_NODES` values after aliases are expanded (an alias bomb is refused
  before it is built, not after it has eaten the memory);
- a key given twice in one mapping is an error naming both lines (never last-wins);
- merge keys (`<<:`) are refused: with them a key's value may come from elsewhere;
- every key keeps its line (`Doc.line("a.b[0].c")`), so a checker can report
  `file:line: field 'a.b[0].c': ...`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from bench.errors import DataError

MAX_BYTES = 2_000_000
MAX_DEPTH = 64
MAX_ALIASES = 256
MAX_NODES = 200_000

_PLAIN = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "timestamp", "binary")}
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


@dataclass
class Doc:
    """Loaded YAML plus the line (1-based) of every key and list item, by dotted path."""

    path: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, where: str) -> int | None:
        while where:  # a field without a mark of its own points at its parent's line
            if where in self.lines:
                return self.lines[where]
            cut = max(where.rfind("."), where.rfind("["))
            where = where[:cut] if cut > 0 else ""
        return None

    def error(self, where: str, message: str) -> DataError:
        return DataError(message, path=self.path, line=self.line(where), field=where or None)


class _BoundedLoader(yaml.SafeLoader):
    """Composes nodes only; counts depth and aliases while it does."""

    def __init__(self, stream: str, name: str) -> None:
        super().__init__(stream)
        self.name = name
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name); write the values out", mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.mark = mark


def load_text(text: str, path: str | Path = "<text>") -> Doc:
    """Parse `text` under the rules above; any problem is a DataError naming path:line."""
    path = str(path)
    if len(text) > MAX_BYTES:
        raise DataError(f"YAML file is {len(text):,} characters; the limit is {MAX_BYTES:,}", path=path)
    loader = None
    try:
        loader = _BoundedLoader(text, path)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return Doc(path, None, {})
        _count(node, {}, set())
        builder = _Builder(path, SafeConstructor())
        data = builder.build(node, "")
        return Doc(path, data, builder.lines)
    except _Refused as exc:
        raise DataError(str(exc), path=path, line=_line(exc.mark)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(f"not valid YAML: {problem}", path=path, line=_line(mark)) from None
    except RecursionError:  # belt and braces: MAX_DEPTH stops far earlier
        raise DataError(f"nested too deeply (limit {MAX_DEPTH} levels)", path=path) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_file(path: str | Path) -> Doc:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise DataError(f"YAML file is {size:,} bytes; the limit is {MAX_BYTES:,}", path=path)
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a YAML file", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte offset {exc.start})", path=path,
                        line=raw[:exc.start].count(b"\n") + 1) from None
    return load_text(text, path)


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _count(node: yaml.Node, sizes: dict[int, int], stack: set[int]) -> int:
    """Values the node stands for once aliases are expanded (memoised per node)."""
    key = id(node)
    if key in sizes:
        size = sizes[key]
    else:
        if key in stack:
            raise _Refused("an alias refers to its own parent (a recursive structure)", node.start_mark)
        stack.add(key)
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(_count(v, sizes, stack) for v in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(_count(k, sizes, stack) + _count(v, sizes, stack) for k, v in node.value)
        stack.discard(key)
        sizes[key] = size
    if size > MAX_NODES:
        raise _Refused(f"expands to more than {MAX_NODES:,} values (an alias bomb?)", node.start_mark)
    return size


def _tag(node: yaml.Node) -> str:
    return f"not valid YAML here: tag {node.tag!r} is not plain data (YAML holds data only)"


class _Builder:
    """Nodes -> Python data, recording lines and refusing duplicates, merges and tags."""

    def __init__(self, path: str, constructor: SafeConstructor) -> None:
        self.path = path
        self.constructor = constructor
        self.lines: dict[str, int] = {}

    def build(self, node: yaml.Node, where: str) -> Any:
        if where:
            self.lines.setdefault(where, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _PLAIN:
                raise _Refused(_tag(node), node.start_mark)
            return self.constructor.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise _Refused(_tag(node), node.start_mark)
            return [self.build(v, f"{where}[{i}]") for i, v in enumerate(node.value)]
        if node.tag != _MAP:
            raise _Refused(_tag(node), node.start_mark)
        out: dict[Any, Any] = {}
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused("merge keys (<<) are not supported; write the keys out", key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused("a mapping key must be a plain value, not a list or mapping", key_node.start_mark)
            key = self.build(key_node, "")
            line = key_node.start_mark.line + 1
            if key in first:
                name = f"{where}.{key}" if where else str(key)
                raise _Refused(f"duplicate key {name!r} on line {first[key]} and line {line}; keep one",
                               key_node.start_mark)
            first[key] = line
            child = f"{where}.{key}" if where else str(key)
            self.lines[child] = line
            out[key] = self.build(value_node, child)
        return out

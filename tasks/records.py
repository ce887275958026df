"""Reading a user task's data files: JSONL and CSV records with their line numbers, and
the text and list fields taken from them. Every problem is a `DataError` naming the
file, the line and the field."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator

from bench.errors import DataError
from bench.jsonl import loads_bounded

LIST_SEPARATOR = "|"  # a CSV cell holding several answers or doc ids: a|b|c


def utf8(raw: bytes, path: Path, line: int, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte offset {offset + exc.start} in the file); re-save it as UTF-8",
                        path=path, line=line) from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line."""
    offset = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            text = utf8(raw, path, number, offset).lstrip("\ufeff")
            offset += len(raw)
            if not text.strip():
                continue
            try:
                row = loads_bounded(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=path, line=number) from None
            except ValueError as exc:  # nested past the limit
                raise DataError(f"refused: {exc}", path=path, line=number) from None
            if not isinstance(row, dict):
                raise DataError(f"each line must be a JSON object, got {type(row).__name__}", path=path, line=number)
            yield number, row


def read_csv(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number where the record starts, row) for each non-blank record after the header."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # spreadsheets often write a byte-order mark
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text (byte offset {exc.start}); re-save it as UTF-8", path=path, line=line) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        if not any(header):
            return
        if len(set(header)) != len(header):
            raise DataError(f"duplicate column names in the header: {header}", path=path, line=1)
        end = reader.line_num
        for record in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                raise DataError(f"row has {len(record)} fields, the header has {len(header)}", path=path, line=start)
            yield start, dict(zip(header, record))
    except csv.Error as exc:
        raise DataError(f"CSV error: {exc}", path=path, line=reader.line_num) from None


def text_field(row: dict, name: str, path: Path, line: int) -> str:
    value = row.get(name)
    if value is None:
        raise DataError(f"missing field (this row has: {', '.join(map(str, row)) or 'nothing'})",
                        path=path, line=line, field=name)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"must be a string or a number, got {type(value).__name__}", path=path, line=line, field=name)
    if not str(value).strip():
        raise DataError("is empty", path=path, line=line, field=name)
    return str(value).strip()


def list_field(row: dict, name: str, path: Path, line: int) -> list[str]:
    """A list of non-empty strings from a JSON list, one string, or a CSV cell split on
    `LIST_SEPARATOR` (or holding a JSON list)."""
    value = row.get(name)
    if value is None:
        raise DataError(f"missing field (this row has: {', '.join(map(str, row)) or 'nothing'})",
                        path=path, line=line, field=name)
    if isinstance(value, str) and path.suffix.lower() == ".csv":
        text = value.strip()
        if text.startswith("["):
            try:
                value = loads_bounded(text)
            except ValueError as exc:
                raise DataError(f"starts with '[' but is not a JSON list ({exc}); write a|b|c or a JSON list",
                                path=path, line=line, field=name) from None
        else:
            value = text.split(LIST_SEPARATOR)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise DataError(f"must be a list of strings, got {type(value).__name__}", path=path, line=line, field=name)
    items = []
    for i, item in enumerate(value, 1):
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise DataError(f"item {i} must be a string, got {type(item).__name__}", path=path, line=line, field=name)
        if not str(item).strip():
            raise DataError(f"item {i} is empty", path=path, line=line, field=name)
        items.append(str(item).strip())
    if not items:
        raise DataError("is an empty list", path=path, line=line, field=name)
    return list(dict.fromkeys(items))

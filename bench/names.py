"""Names the bench shows and files under: checked once, up front, before any model loads.

A task name, strategy label or model spec ends up in cell ids, file names, the console
(rich markup), CSV, Markdown and HTML. Rules, one per way a name has broken a run:
- at most `MAX_LEN` characters (a cell id is a folder name; a file system allows 255);
- no control or invisible format characters (a NUL written raw into a CSV or HTML);
- no `[/` (rich reads `[/]` as a closing tag and the whole run stops; other brackets,
  as in sweep labels `lora[r=4]`, are left to the printers, which escape data);
- no `|` (it separates the parts of a cell id; `a|b` + `c` would equal `a` + `b|c`);
- no leading `=`, `+`, `-`, `@` (a spreadsheet runs such a cell as a formula);
- no secret's value inside (masking it would break the join between a cell and its rows);
- unique across the grid (two task specs with one `name` would credit one with the other).
Every CSV the bench writes also goes through `csv_safe`, so text cells that a
spreadsheet would run (model output, error messages) are written as text.
"""
from __future__ import annotations

import unicodedata
from typing import Any, Iterable

from bench.errors import BenchError

MAX_LEN = 64
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def name_problem(value: Any, max_len: int = MAX_LEN) -> str | None:
    """Why `value` cannot be a name, or None when it can."""
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-empty string, got {value!r}"
    if len(value) > max_len:
        return f"is {len(value)} characters long; at most {max_len} are allowed"
    bad = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        return f"holds the control character U+{ord(bad):04X}; remove it"
    if "[/" in value:
        return "holds '[/', which the console reads as a closing markup tag; use '(' ')' or '-' instead"
    if "|" in value:
        return "holds '|', which separates the parts of a cell id; use '-' or '_' instead"
    if value.startswith(FORMULA_PREFIXES):
        return f"starts with {value[0]!r}, which a spreadsheet runs as a formula; start it with a letter or digit"
    from bench.redact import secret_values

    if any(secret in value for secret in secret_values()):
        return "contains the value of a secret (an API key, token or password); rename it"
    return None


def check_name(kind: str, value: Any, where: str, max_len: int = MAX_LEN) -> str:
    problem = name_problem(value, max_len)
    if problem:
        raise BenchError(f"{where}: {kind} {_show(value)} {problem}")
    return value


def check_unique(kind: str, names: Iterable[tuple[str, str]]) -> None:
    """`names`: (name, where it came from); two equal names are an error naming both."""
    seen: dict[str, str] = {}
    for name, where in names:
        if name in seen:
            raise BenchError(f"{kind} {name!r} is given twice: by {seen[name]} and by {where}; "
                             "each must have its own name")
        seen[name] = where


def check_grid(config: Any) -> None:
    """Every name of a run's grid (task names, strategy labels, model specs), and the
    folder name of every cell, before anything loads. Raises BenchError naming the entry."""
    from pathlib import Path

    from bench.config import FieldError
    from bench.store import cell_id, safe_name

    def field(key: str, kind: str, value: Any, max_len: int = MAX_LEN) -> None:
        problem = name_problem(value, max_len)
        if problem:
            raise FieldError(key, f"{kind} {_show(value)} {problem}")

    tasks: list[tuple[str, str]] = []
    for i, entry in enumerate(config.tasks):
        field(f"tasks[{i}]", "task", entry, 1024)
        if entry.endswith((".yaml", ".yml")):
            name, where = _spec_name(Path(entry))
            if name is None:
                continue  # missing or unreadable: the task loader says so, with the reason
            tasks.append((name, where))
        else:
            tasks.append((entry, f"config.tasks[{i}]"))
    check_unique("task name", tasks)
    labels = []
    for i, spec in enumerate(config.strategy_specs()):
        field(f"strategies[{i}]", "strategy label", spec.label)
        labels.append(spec.label)
    models = []
    for i, spec in enumerate(config.model_specs()):  # the label is the model's name in cells and tables
        field(f"models[{i}]", "model label", spec.label, 200)
        models.append(spec.label)
    seed = max(config.seeds, key=lambda s: len(str(s)))
    for task, _ in tasks:
        for label in labels:
            for model in models:
                folder = safe_name(cell_id(task, label, model, seed))
                if len(folder.encode("utf-8")) > 240:
                    raise BenchError(f"the cell {cell_id(task, label, model, seed)!r} makes a folder name of "
                                     f"{len(folder.encode('utf-8'))} bytes (file systems allow 255); "
                                     "shorten the task name, strategy label or model path")


def _spec_name(path: Any) -> tuple[str | None, str]:
    """A task spec's `name` (default: the file's stem), checked, and where it is written."""
    from bench import yamlio
    from bench.errors import DataError

    if not path.is_file():
        return None, str(path)
    doc = yamlio.load_file(path)
    data = doc.data if isinstance(doc.data, dict) else {}
    name = data.get("name", path.stem)
    if isinstance(name, str):
        name = name.strip()
    problem = name_problem(name)
    if problem:
        raise DataError(f"task name {_show(name)} {problem}", path=path, line=doc.line("name"), field="name")
    return name, f"{path}" + (f":{doc.line('name')}" if doc.line("name") else "")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"...' ({len(str(value))} characters)"


def csv_safe(frame):
    """A copy of a pandas frame whose text cells a spreadsheet would run as formulas
    (`=`, `+`, `-`, `@`, tab, CR first) start with a quote, as OWASP advises."""
    from pandas.api.types import is_numeric_dtype

    out = frame.copy()
    for col in out.columns:
        if not is_numeric_dtype(out[col]):
            out[col] = out[col].map(_cell)
    out.columns = [_cell(c) for c in out.columns]
    return out


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value

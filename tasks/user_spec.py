"""User tasks: a YAML spec naming JSONL or CSV files (and optionally a corpus).

    name: ticket-routing                # default: the spec file's stem
    kind: classification                # classification | qa | generation
    instruction: Route the support ticket to a team.
    labels: [billing, bug, account]     # required for classification
    metric: accuracy                    # default: accuracy (classification), else f1
    train: data/train.jsonl             # paths are relative to this file
    test: data/test.csv                 # validation/test optional: carved from train
    split: {ratios: [0.8, 0.1, 0.1], seed: 0}
    fields: {input: text, target: team, id: ticket_id}
    # qa only, both optional: every accepted answer, and the gold documents' ids
    # fields: {input: question, answers: answers, doc_ids: gold}
    corpus: docs/**/*.md                # or a list of globs; .txt/.md/.jsonl files
    max_new_tokens: 16

Rules:
- YAML holds data only (`bench.yamlio`: bounded, no duplicate keys), and unknown keys are rejected by name
  (with a close match, if any) so a typo never silently drops a setting.
- Every data problem is a `DataError` naming the file, the line and the field, so
  the CLI prints one actionable line, never a traceback.
- Ids must be unique across all splits (a duplicate is how leakage shows up);
  rows without an id get "<file name>:<line>".
- Paths stay where the user put them: data files and corpus globs resolve inside the
  spec's folder (symlinks followed, then checked); an absolute path, a `..` or a
  symlink leading elsewhere is refused unless that folder is allowed with
  `bench run --allow-path DIR` (the `ADAPTBENCH_ALLOW_PATHS` variable, `os.pathsep`
  separated), a choice of the person running the bench, never of the spec.
- `fields.answers` names a list field of accepted answers (QA): exact match and F1
  take the best over them; without a `target` column the first answer is the target.
  `fields.doc_ids` names the ids of the documents holding the answer (a list, or one
  string), which must be corpus document ids (a .md/.txt file's path relative to the
  spec, or a corpus .jsonl row's `id`); they give recall@k and the retrieval-miss vs
  generation-miss split. In JSONL both are JSON lists (or one string); in CSV a cell
  holds the items separated by `tasks.records.LIST_SEPARATOR` ("|"), or a JSON list (`["a", "b"]`).
- Test order is mixed by a seeded shuffle (by label for classification): the runner
  takes the first N test examples for `--limit N`, and a file sorted by label
  would otherwise test one label only.
"""
from __future__ import annotations

import difflib
import glob
import os
from pathlib import Path
from typing import Any, Iterator

from bench import yamlio
from bench.errors import DataError
from tasks.model import KINDS, METRICS, Document, Example, Task
from tasks.records import list_field, read_csv, read_jsonl, text_field, utf8
from tasks.splits import DEFAULT_RATIOS, check_ratios, mix_order, stratified_split

SPEC_KEYS = ("name", "kind", "instruction", "labels", "metric", "train", "validation", "test", "fields", "split",
             "corpus", "max_new_tokens")
FIELD_KEYS = ("input", "target", "id", "answers", "doc_ids")
LIST_FIELDS = ("answers", "doc_ids")  # optional: read only when the spec names them
SPLIT_KEYS = ("ratios", "seed")
SPLITS = ("train", "validation", "test")
DEFAULT_INSTRUCTIONS = {"classification": "Classify the input. Answer with one of the labels.",
                        "qa": "Answer the question.", "generation": "Respond to the input."}


class _Spec:
    """The parsed YAML plus the line of every key, for messages that point at it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        doc = yamlio.load_file(path)  # bounded, duplicate keys refused, data only
        if not isinstance(doc.data, dict):
            raise DataError("a task spec must be a YAML mapping (key: value lines)", path=path)
        self.data, self.lines = doc.data, doc.lines

    def error(self, key: str, message: str) -> DataError:
        return DataError(message, path=self.path, line=self.lines.get(key), field=key)

    def check_keys(self, mapping: dict, known: tuple[str, ...], prefix: str = "") -> None:
        for key in mapping:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, 1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(f"{prefix}{key}", f"unknown key{hint}; known keys: {', '.join(known)}")

    def text(self, key: str, value: Any, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def choice(self, key: str, value: Any, allowed: tuple[str, ...]) -> str:
        if value is None:
            raise self.error(key, f"missing; choose one of {', '.join(allowed)}")
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(key, f"unknown {key} {value!r}{hint}; choose one of {', '.join(allowed)}")
        return value


def allowed_roots(spec_dir: Path) -> list[Path]:
    """The folders a spec may read from: its own, plus those the user allowed."""
    extra = [Path(p).expanduser().resolve() for p in os.environ.get("ADAPTBENCH_ALLOW_PATHS", "").split(os.pathsep)
             if p.strip()]
    return [spec_dir.resolve(), *extra]


def _inside(path: Path, roots: list[Path]) -> bool:
    real = path.resolve()
    return any(real == root or root in real.parents for root in roots)


def _outside_message(shown: str, path: Path, base: Path) -> str:
    return (f"{shown} resolves to {path.resolve()}, outside the spec's folder {base}; a task spec reads only "
            "files under its own folder (a symlink or '..' does not change that). Move the file there, or allow "
            "its folder with `bench run --allow-path DIR`")


def _resolve(spec: _Spec, key: str, value: Any) -> Path:
    text = spec.text(key, value)
    base = spec.path.parent
    roots = allowed_roots(base)
    if Path(text).expanduser().is_absolute() and not _inside(Path(text).expanduser(), roots[1:]):
        raise spec.error(key, f"absolute path {text!r}: paths are relative to the spec's folder; allow another "
                         "folder with `bench run --allow-path DIR`")
    path = base / Path(text).expanduser()
    if not path.is_file():
        raise spec.error(key, f"file not found: {path} (paths are relative to the spec's folder)")
    if not _inside(path, roots):
        raise spec.error(key, _outside_message(repr(text), path, base))
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise spec.error(key, f"{path.name}: use a .jsonl or .csv file")
    return path


def _read_split(spec: _Spec, split: str, fields: dict[str, str], labels: tuple[str, ...],
                seen: dict[str, str]) -> list[Example]:
    path = _resolve(spec, split, spec.data[split])
    rows = read_jsonl(path) if path.suffix.lower() == ".jsonl" else read_csv(path)
    explicit_id = "id" in (spec.data.get("fields") or {})
    examples = []
    given = spec.data.get("fields") or {}
    for line, row in rows:
        text = text_field(row, fields["input"], path, line)
        meta: dict[str, Any] = {"source": f"{path.name}:{line}"}
        answers = list_field(row, fields["answers"], path, line) if "answers" in given else None
        if answers is not None and "target" not in given and fields["target"] not in row:
            target = answers[0]  # no target column: the first accepted answer is canonical
        else:
            target = text_field(row, fields["target"], path, line)
        if answers is not None:
            meta["answers"] = list(dict.fromkeys([target, *answers]))
        if "doc_ids" in given:
            meta["doc_ids"] = list_field(row, fields["doc_ids"], path, line)
            meta["doc_ids_at"] = [str(path), line]
        if labels and target not in labels:
            close = [lab for lab in labels if lab.lower() == target.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(f"label {target!r} is not one of the declared labels{hint}: {', '.join(labels)}",
                            path=path, line=line, field=fields["target"])
        ex_id = text_field(row, fields["id"], path, line) if explicit_id or fields["id"] in row else f"{path.name}:{line}"
        if ex_id in seen:
            raise DataError(f"duplicate id {ex_id!r}, first seen at {seen[ex_id]}; ids must be unique across "
                            "train, validation and test", path=path, line=line, field=fields["id"])
        seen[ex_id] = f"{path}:{line}"
        examples.append(Example(ex_id, text, target, meta))
    if not examples:
        raise DataError(f"no examples in this file (the {split} split)", path=path)
    return examples


def _read_corpus(spec: _Spec, value: Any) -> list[Document]:
    patterns = value if isinstance(value, list) else [value]
    docs: dict[str, tuple[Document, str]] = {}
    for pattern in patterns:
        pattern = spec.text("corpus", pattern)
        base = spec.path.parent
        roots = allowed_roots(base)
        if Path(pattern).expanduser().is_absolute() and not _inside(Path(pattern).expanduser().parent, roots[1:]):
            raise spec.error("corpus", f"absolute pattern {pattern!r}: corpus globs are relative to the spec's "
                             "folder; allow another folder with `bench run --allow-path DIR`")
        files = sorted(Path(f) for f in glob.glob(str(base / Path(pattern).expanduser()), recursive=True)
                       if os.path.isfile(f))
        if not files:
            raise spec.error("corpus", f"pattern {pattern!r} matched no files (relative to {spec.path.parent})")
        for path in files:
            if not _inside(path, roots):
                raise spec.error("corpus", _outside_message(f"{pattern!r} matched {path}, which", path, base))
            for doc, where in _documents(path, spec.path.parent):
                if doc.id in docs:
                    raise DataError(f"duplicate document id {doc.id!r}, first seen at {docs[doc.id][1]}",
                                    path=path, field="id")
                docs[doc.id] = (doc, where)
    return [doc for doc, _ in docs.values()]


def _documents(path: Path, base: Path) -> Iterator[tuple[Document, str]]:
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md"):
        text = utf8(path.read_bytes(), path, 1, 0)
        text = text.lstrip("\ufeff").strip()
        if not text:
            raise DataError("empty corpus document", path=path)
        yield Document(Path(os.path.relpath(path, base)).as_posix(), text, path.stem), str(path)
    elif suffix == ".jsonl":
        for line, row in read_jsonl(path):
            title = row.get("title") or ""
            yield Document(text_field(row, "id", path, line), text_field(row, "text", path, line), str(title)), f"{path}:{line}"
    else:
        raise DataError("unsupported corpus file type; use .txt, .md or .jsonl", path=path)


def load_spec(path: str | os.PathLike, seed: int = 0) -> Task:
    """The task a YAML spec describes; `split.seed` in the spec, if given, wins over `seed`."""
    try:
        return _load(_Spec(Path(path)), seed)
    except OSError as exc:  # unreadable file or folder (permissions, a directory named like a file)
        raise DataError(f"cannot read: {exc.strerror or exc}", path=exc.filename or path) from None


def _load(spec: _Spec, seed: int) -> Task:
    data = spec.data
    spec.check_keys(data, SPEC_KEYS)
    kind = spec.choice("kind", data.get("kind"), KINDS)
    labels: tuple[str, ...] = ()
    if kind == "classification" or "labels" in data:
        raw = data.get("labels")
        if kind != "classification":
            raise spec.error("labels", f"labels apply only to classification tasks, not {kind}")
        if not isinstance(raw, list) or len(raw) < 2 or any(isinstance(x, bool) or not isinstance(x, (str, int))
                                                            for x in raw):
            raise spec.error("labels", "a classification task needs a list of at least two labels (quote words "
                             "like yes/no/on/off, which YAML reads as booleans)")
        labels = tuple(str(x).strip() for x in raw)
        if len(set(labels)) != len(labels):
            raise spec.error("labels", f"labels repeat: {list(labels)}")
    metric = spec.choice("metric", data.get("metric", "accuracy" if kind == "classification" else "f1"), METRICS)
    fields = {k: k for k in FIELD_KEYS}
    if "fields" in data:
        if not isinstance(data["fields"], dict):
            raise spec.error("fields", "must be a mapping like {input: text, target: label}")
        spec.check_keys(data["fields"], FIELD_KEYS, "fields.")
        fields.update({k: spec.text(f"fields.{k}", v) for k, v in data["fields"].items()})
        for key in LIST_FIELDS:
            if key in data["fields"] and kind != "qa":
                raise spec.error(f"fields.{key}", f"applies to qa tasks only, not {kind}")
        if "doc_ids" in data["fields"] and data.get("corpus") is None:
            raise spec.error("fields.doc_ids", "gold document ids need a corpus: add `corpus:` (the documents "
                             "RAG retrieves from, whose ids these are)")
    split = data.get("split") or {}
    if not isinstance(split, dict):
        raise spec.error("split", "must be a mapping like {ratios: [0.8, 0.1, 0.1], seed: 0}")
    spec.check_keys(split, SPLIT_KEYS, "split.")
    try:
        ratios = check_ratios(split.get("ratios", DEFAULT_RATIOS))
    except ValueError as exc:
        raise spec.error("split.ratios", str(exc)) from None
    seed = split.get("seed", seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise spec.error("split.seed", f"must be an integer, got {seed!r}")
    if "train" not in data:
        raise spec.error("train", "missing: every task needs a train file")

    seen: dict[str, str] = {}
    parts = {s: _read_split(spec, s, fields, labels, seen) for s in SPLITS if data.get(s) is not None}
    missing = [s for s in SPLITS if s not in parts]
    if missing:  # carve the missing splits out of train, keeping the ratios between those involved
        pool = parts["train"]
        share = dict(zip(SPLITS, ratios))
        total = share["train"] + sum(share[s] for s in missing)
        if total <= 0:
            raise spec.error("split.ratios", f"ratios {list(ratios)} leave nothing to carve {missing} from train")
        shares = [share[s] / total if s == "train" or s in missing else 0.0 for s in SPLITS]
        by = (lambda ex: ex.target) if kind == "classification" else (lambda ex: "")
        parts.update({s: part for s, part in zip(SPLITS, stratified_split(pool, shares, seed, key=by))
                      if s == "train" or s in missing})
        for s in ["train", *missing]:  # given files are never empty: _read_split checks
            if not parts[s]:
                raise spec.error("split.ratios", f"split {s!r} is empty: {len(pool)} train examples are too few "
                                 f"for ratios {list(ratios)}; add examples, give a {s} file or change split.ratios")
    corpus = _read_corpus(spec, data["corpus"]) if data.get("corpus") is not None else None
    if corpus is not None and "doc_ids" in (data.get("fields") or {}):
        _check_doc_ids(parts, {d.id for d in corpus}, fields["doc_ids"])
    try:
        return Task(name=spec.text("name", data.get("name"), spec.path.stem), kind=kind,
                    instruction=spec.text("instruction", data.get("instruction"), DEFAULT_INSTRUCTIONS[kind]),
                    labels=labels, train=parts["train"], validation=parts["validation"],
                    test=mix_order(parts["test"], lambda ex: ex.target if labels else "", seed),
                    corpus=corpus,
                    metric=metric, source=str(spec.path), max_new_tokens=_max_new_tokens(spec, data))
    except ValueError as exc:
        raise DataError(str(exc), path=spec.path) from None


def _check_doc_ids(parts: dict[str, list[Example]], known: set[str], field: str) -> None:
    """Every gold document id names a corpus document (else recall@k would count a typo
    as a retrieval miss); drops the bookkeeping of where each list was read."""
    for split, examples in parts.items():
        for i, ex in enumerate(examples):
            meta = dict(ex.meta)
            where = meta.pop("doc_ids_at", None)
            missing = [d for d in meta.get("doc_ids", []) if d not in known]
            if missing:
                close = difflib.get_close_matches(missing[0], sorted(known), 1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataError(f"document id {missing[0]!r} is not in the corpus{hint}; ids are a .md/.txt file's "
                                "path relative to the spec, or a corpus .jsonl row's id",
                                path=where[0] if where else None, line=where[1] if where else None, field=field)
            examples[i] = Example(ex.id, ex.input, ex.target, meta)


def _max_new_tokens(spec: _Spec, data: dict) -> int:
    value = data.get("max_new_tokens", 32)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise spec.error("max_new_tokens", f"must be a positive integer, got {value!r}")
    return value

"""User QA specs with several accepted answers and gold document ids: EM/F1 take the
best reference, recall@k uses the gold ids, and malformed lists name file, line, field."""
import json
from pathlib import Path

import pytest

from bench.errors import DataError
from bench.metrics import score_example
from bench.runner import recall_at_k
from tasks.user_spec import load_spec


def _write(tmp_path: Path, rows, corpus=True, fields="{input: question, answers: answers, doc_ids: gold}",
           name="qa.jsonl") -> Path:
    (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if corpus:
        (tmp_path / "docs").mkdir(exist_ok=True)
        (tmp_path / "docs" / "paris.md").write_text("Paris is the capital of France.", encoding="utf-8")
        (tmp_path / "docs" / "rivers.jsonl").write_text(json.dumps({"id": "seine", "text": "The Seine."}) + "\n",
                                                        encoding="utf-8")
    spec = tmp_path / "task.yaml"
    spec.write_text(f"kind: qa\ntrain: {name}\nsplit: {{ratios: [0.4, 0.2, 0.4], seed: 0}}\nfields: {fields}\n"
                    + ("corpus: docs/*\n" if corpus else ""), encoding="utf-8")
    return spec


def _rows(n=8):
    return [{"question": f"Where {i}?", "answers": ["Paris", "the city of Paris"], "gold": ["docs/paris.md", "seine"]}
            if i % 2 == 0 else {"question": f"River {i}?", "answers": "Seine", "gold": "seine"} for i in range(n)]


def test_list_answers_and_doc_ids_give_best_reference_em_f1_and_recall(tmp_path):
    task = load_spec(_write(tmp_path, _rows()))
    everything = task.train + task.validation + task.test
    paris = next(ex for ex in everything if ex.input.startswith("Where"))
    river = next(ex for ex in everything if ex.input.startswith("River"))
    assert paris.target == "Paris" and paris.answers == ["Paris", "the city of Paris"]
    assert paris.meta["doc_ids"] == ["docs/paris.md", "seine"] and "doc_ids_at" not in paris.meta
    assert river.answers == ["Seine"] and river.meta["doc_ids"] == ["seine"]
    # EM/F1: the best over the references, not the first one.
    s = score_example("f1", "city of Paris", paris.answers)
    assert s["exact_match"] == 1.0 and s["f1"] == 1.0  # "the" is dropped by SQuAD normalisation
    s = score_example("f1", "Paris France", paris.answers)
    assert s["exact_match"] == 0.0 and s["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)  # vs "Paris": p 1/2, r 1
    # recall@k: any gold document among those retrieved
    assert recall_at_k(["m", "seine"], paris.meta["doc_ids"]) == 1.0
    assert recall_at_k(["m", "x"], river.meta["doc_ids"]) == 0.0


def test_csv_lists_use_the_separator_or_json(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("A.", encoding="utf-8")
    (tmp_path / "docs" / "b.md").write_text("B.", encoding="utf-8")
    lines = ["q,ans,gold"] + [f'q{i},"yes | yeah",docs/a.md|docs/b.md' if i % 2 else f'q{i},"[""no"", ""nope""]",docs/a.md'
                              for i in range(6)]
    (tmp_path / "qa.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tmp_path / "t.yaml"
    spec.write_text("kind: qa\ntrain: qa.csv\nsplit: {ratios: [0.4, 0.2, 0.4], seed: 0}\n"
                    "fields: {input: q, answers: ans, doc_ids: gold}\ncorpus: docs/*\n", encoding="utf-8")
    task = load_spec(spec)
    by = {ex.input: ex for ex in task.train + task.validation + task.test}
    assert by["q1"].answers == ["yes", "yeah"] and by["q1"].meta["doc_ids"] == ["docs/a.md", "docs/b.md"]
    assert by["q0"].answers == ["no", "nope"] and by["q0"].meta["doc_ids"] == ["docs/a.md"]


@pytest.mark.parametrize("bad,message", [
    ({"answers": [], "gold": "seine"}, "field 'answers': is an empty list"),
    ({"answers": ["ok", {"x": 1}], "gold": "seine"}, "field 'answers': item 2 must be a string, got dict"),
    ({"answers": ["ok", " "], "gold": "seine"}, "field 'answers': item 2 is empty"),
    ({"answers": "ok", "gold": {"id": 1}}, "field 'gold': must be a list of strings, got dict"),
    ({"answers": "ok"}, "field 'gold': missing field"),
    ({"answers": "ok", "gold": ["seine", "sien"]}, "field 'gold': document id 'sien' is not in the corpus "
                                                   "(did you mean 'seine'?)"),
])
def test_malformed_list_fields_name_file_line_and_field(tmp_path, bad, message):
    rows = _rows(6)
    rows.insert(3, {"question": "bad?", **bad})
    with pytest.raises(DataError) as info:
        load_spec(_write(tmp_path, rows))
    assert f"qa.jsonl:4: {message}" in str(info.value)  # file, line (the 4th row), field


def test_list_fields_need_qa_and_doc_ids_need_a_corpus(tmp_path):
    with pytest.raises(DataError, match="fields.doc_ids.*need a corpus"):
        load_spec(_write(tmp_path, _rows(), corpus=False))
    cls = tmp_path / "cls.yaml"
    cls.write_text("kind: classification\nlabels: [a, b]\ntrain: qa.jsonl\nfields: {input: question, answers: x}\n",
                   encoding="utf-8")
    with pytest.raises(DataError, match="applies to qa tasks only"):
        load_spec(cls)


def test_user_spec_gold_ids_reach_rows_recall_and_the_retrieval_split(tmp_path):
    """Through RAG (hashing embedder, fake model answering "Paris") and the runner's row
    scoring into a run folder: EM/F1 best-of-references, recall@k, and the verdict's split."""
    from fakes import FakeHandle, HashingEmbedder

    from bench.runner import score_rows
    from bench.store import RunStore, cell_id
    from reports.frame import load_run
    from reports.summary import summarize
    from reports.verdict import display_labels, verdict
    from strategies.base import Budget
    from strategies.rag import RagConfig, RagStrategy

    topics = ["volcano", "glacier", "desert", "harbour", "orchard", "canyon", "meadow", "lagoon"]
    (tmp_path / "docs").mkdir()
    for t in topics:
        (tmp_path / "docs" / f"{t}.md").write_text(f"The {t} {t} {t} is described here.", encoding="utf-8")
    rows = [{"question": f"Which city is near the {t} {t}?", "gold": f"docs/{t}.md",
             "answers": ["Paris", "the city of Paris"] if i % 2 == 0 else ["Lyon"]} for i, t in enumerate(topics)]
    task = load_spec(_gold_spec(tmp_path, rows))
    strategy = RagStrategy(RagConfig(top_k=1), embedder=HashingEmbedder())
    artifacts = strategy.prepare(task, FakeHandle(reply="Paris"), Budget())
    examples = task.train + task.validation + task.test
    preds = strategy.predict(artifacts, examples)
    cell = cell_id(task.name, "rag", "fake", 0)
    scored = score_rows(cell, task, "rag", "fake", 0, examples, preds)
    for ex, row, pred in zip(examples, scored, preds):
        gold = ex.meta["doc_ids"]
        assert row["recall_at_k"] == float(any(d in pred.retrieved_ids for d in gold))
        paris = "Paris" in ex.answers
        assert row["exact_match"] == float(paris) and row["f1"] == float(paris) and row["score"] == float(paris)
        assert row.get("answers") == (["Paris", "the city of Paris"] if paris else None)
    assert sum(r["recall_at_k"] for r in scored) >= 6  # the topic words find their documents
    store = RunStore(tmp_path / "run")
    store.append_rows(scored)
    store.append_cell({"cell": cell, "task": task.name, "strategy": "rag", "model": "fake", "seed": 0,
                       "status": "ok", "metric": "f1", "n": len(scored), "prepare_s": 0.1, "predict_s": 0.1,
                       "info": {"index_type": "flat"}})
    summary = summarize(load_run(tmp_path / "run"))
    row = summary.iloc[0]
    hits = [r for r in scored if r["recall_at_k"] == 1.0]
    assert row["score_retrieved"] == pytest.approx(sum(r["score"] for r in hits) / len(hits))
    text = verdict(summary, display_labels(summary), "f1")
    share = sum(r["recall_at_k"] for r in scored) / len(scored)
    assert f"rag: gold passage retrieved for {share:.0%} of questions; f1 " in text
    assert "the model, not retrieval, limits rag here" in text  # half the answers are unreachable for "Paris"
    from reports.html import render_html_text

    assert "<td>generation</td>" in render_html_text(load_run(tmp_path / "run"))  # the retrieval table's column


def _gold_spec(tmp_path: Path, rows) -> Path:
    (tmp_path / "gold.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = tmp_path / "gold.yaml"
    spec.write_text("name: gold\nkind: qa\ntrain: gold.jsonl\nsplit: {ratios: [0.5, 0.25, 0.25], seed: 0}\n"
                    "fields: {input: question, answers: answers, doc_ids: gold}\ncorpus: docs/*.md\n",
                    encoding="utf-8")
    return spec

"""Corpus changes: config validation, change files, seeded rewrites, and the fact each cell records."""
import json

import pytest

import bench.backends
import strategies.rag
import tasks as tasks_pkg
from bench.config import RunConfig, make_config
from bench.errors import BenchError, DataError
from bench.runner import Runner
from bench.store import read_jsonl
from bench.updates import DocChange, apply_changes, change_for, measure, read_change_file, rewrite_share
from fakes import FakeHandle, HashingEmbedder, fake_definition, toy_qa
from strategies import STRATEGIES
from tasks.model import Document


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, True, [0.1]])
def test_corpus_change_outside_zero_to_one_is_refused(bad):
    with pytest.raises(BenchError, match="corpus_change"):
        RunConfig(corpus_change=bad, tasks=["toy-qa"], strategies=["prompting"])


def test_corpus_change_from_yaml_names_the_config_line(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tasks: [product-facts]\nstrategies: [prompting]\ncorpus_change: 2\n")
    with pytest.raises(BenchError, match=r"run\.yaml:3.*\(0, 1\]"):
        make_config(str(cfg))
    cfg.write_text("tasks: [product-facts]\nstrategies: [prompting]\ncorpus_change: {product-facts: 0}\n")
    with pytest.raises(BenchError, match=r"corpus_change\.product-facts"):
        make_config(str(cfg))
    cfg.write_text("tasks: [product-facts]\nstrategies: [prompting]\nrefresh_per_month: -1\n")
    with pytest.raises(BenchError, match="refresh_per_month"):
        make_config(str(cfg))
    assert RunConfig(corpus_change=1, refresh_per_month=0.5).refresh_per_month == 0.5
    assert RunConfig(corpus_change={"squad": 0.01}).corpus_change == {"squad": 0.01}


def test_a_task_in_the_mapping_that_the_run_lacks_is_an_error(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tasks: [product-facts, squad]\nstrategies: [prompting]\ncorpus_change:\n"
                   "  product-fact: 0.05\n")
    with pytest.raises(BenchError) as err:
        make_config(str(cfg))
    text = str(err.value)
    assert "run.yaml:4" in text and "corpus_change.product-fact" in text
    assert "no task 'product-fact' in this run (did you mean product-facts?); its tasks: product-facts, squad" in text
    with pytest.raises(BenchError, match=r"corpus_change\.sqaud: no task 'sqaud'"):
        RunConfig(tasks=["squad"], strategies=["prompting"], corpus_change={"sqaud": 0.1})


def test_a_built_in_task_left_out_by_tasks_narrowing_is_not_an_error():
    # `bench run configs/demo.yaml --tasks squad` keeps the demo's product-facts entry.
    cfg = RunConfig(tasks=["squad"], strategies=["prompting"], corpus_change={"squad": 0.1, "product-facts": 0.05})
    assert cfg.corpus_change == {"squad": 0.1, "product-facts": 0.05}


def test_a_task_spec_is_checked_by_its_name_before_any_cell_runs(tmp_path, monkeypatch):
    # A spec path names its task only once loaded: the runner checks the mapping then.
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: toy_qa())  # named toy-facts
    cfg = RunConfig(tasks=[str(tmp_path / "qa.yaml")], strategies=["prompting"], out=str(tmp_path), name="u",
                    limit=2, latency_sample=0, corpus_change={"toy-fact": 0.25})
    typo = r"corpus_change\.toy-fact: no task 'toy-fact' in this run \(did you mean toy-facts\?\)"
    with pytest.raises(BenchError, match=typo):
        Runner(cfg, log=lambda *_: None).run()
    assert not (tmp_path / "u" / "cells.jsonl").exists() and not (tmp_path / "u" / "manifest.json").exists()


@pytest.mark.parametrize("line, message", [
    ('{"id": "d1", "text": "new"', "malformed JSON"),
    ('{"text": "no id"}', "needs an 'id'"),
    ('{"id": "d2", "text": ""}', "'text' must be"),
    ('{"id": "d2", "deleted": true, "text": "x"}', "takes no 'text'"),
    ('{"id": "d2", "deleted": "yes"}', "'deleted' must be"),
    ('{"id": "d2", "body": "x"}', "unknown key"),
    ('{"id": "d0", "text": "twice"}', "appears twice"),
])
def test_a_bad_change_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "changes.jsonl"
    path.write_text('{"id": "d0", "text": "The Zorblat gadget is teal in colour."}\n\n' + line + "\n")
    with pytest.raises(DataError, match=rf"changes\.jsonl:3: .*{message}"):
        read_change_file(path)
    with pytest.raises(DataError, match=r"changes\.jsonl:3"):
        RunConfig(corpus_change=str(path))


def test_a_missing_change_file_says_what_to_give(tmp_path):
    with pytest.raises(BenchError, match="does not exist.*JSONL"):
        RunConfig(corpus_change=str(tmp_path / "nope.jsonl"))


def test_a_change_file_edits_adds_and_deletes(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        {"id": "d1", "text": "The Quenix gadget is teal in colour."},
        {"id": "d9", "text": "The Brando gadget is grey.", "title": "Brando"},
        {"id": "d3", "deleted": True}]) + "\n")
    change = change_for(str(path), toy_qa())
    assert change.edited == ("d1",) and change.added == ("d9",) and change.removed == ("d3",)
    docs = {d.id: d for d in change.documents}
    assert docs["d1"].text.endswith("teal in colour.") and docs["d1"].title == "Quenix"  # the title stays
    assert "d3" not in docs and docs["d9"].title == "Brando" and len(docs) == 8
    assert change.stale == {"d1", "d3"} and [d.id for d in change.fresh] == ["d1", "d9"]
    with pytest.raises(BenchError, match="no document with id"):
        apply_changes(toy_qa().corpus, [DocChange("d77")], "file x")


def test_a_fraction_rewrites_a_seeded_share_and_keeps_the_length():
    corpus = [Document(f"p{i}", f"In {1900 + i} the hall held {i} seats. It was rebuilt later.") for i in range(200)]
    a, b = rewrite_share(corpus, 0.05, seed=3), rewrite_share(corpus, 0.05, seed=3)
    assert a == b and len(a.edited) == 10 and not a.added and not a.removed
    assert rewrite_share(corpus, 0.05, seed=4).edited != a.edited
    new = {d.id: d.text for d in a.documents}
    old = {d.id: d.text for d in corpus}
    for doc_id in a.edited:
        assert new[doc_id] != old[doc_id] and abs(len(new[doc_id]) - len(old[doc_id])) < 20
    assert all(new[i] == old[i] for i in old if i not in a.edited)
    assert len(rewrite_share(corpus[:3], 0.01, seed=0).edited) == 1  # at least one document
    assert change_for(0.5, toy_qa()) is not None and change_for({"other": 0.5}, toy_qa()) is None


def test_what_each_kind_of_strategy_reports_without_a_hook():
    change = rewrite_share(toy_qa().corpus, 0.25, 0)
    weights = fake_definition("w", lambda o: None, changes_weights=True)
    facts = measure(weights, None, None, {"prepare_s": 42.0, "info": {"train_seconds": 40.0}}, change)
    assert facts["method"] == "retrain" and facts["seconds"] == 42.0 and facts["estimate"] is True
    assert facts["train_seconds"] == 40.0 and facts["docs_edited"] == 2
    plain = measure(fake_definition("p", lambda o: None), None, None, {"prepare_s": 3.0}, change)
    assert plain["method"] == "none" and plain["seconds"] == 0.0


class Trained:
    """Stands for a weight-changing strategy: prepares, answers, changes no real weights."""
    name = "trained"

    def prepare(self, task, model, budget):
        from strategies.base import Artifacts

        return Artifacts(self.name, model, task, info={"train_seconds": 0.01})

    def predict(self, artifacts, examples, progress=None):
        from strategies.base import Prediction

        return [Prediction(ex.id, "blue", 0.01, 5, 1) for ex in examples]


TRAINED = fake_definition("trained", lambda o: Trained(), changes_weights=True)


def test_each_cell_records_its_update_and_the_reports_price_it(tmp_path, monkeypatch):
    monkeypatch.setattr(bench.backends, "load_lm", lambda spec, **kw: FakeHandle(reply="blue"))
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: toy_qa())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-qa", "fakes:toy_qa")
    monkeypatch.setitem(STRATEGIES._table, "trained", f"{__name__}:TRAINED")
    monkeypatch.setattr(strategies.rag, "load_embedder", lambda *a, **k: HashingEmbedder(64))
    cfg = RunConfig(tasks=["toy-qa"], strategies=["prompting", {"name": "rag", "shots": 0, "cache": False}, "trained"],
                    out=str(tmp_path), name="u", limit=2, latency_sample=0, corpus_change=0.25, refresh_per_month=8,
                    compare_rebuild=True, cost={"usd_per_hour": 3600.0, "monthly_volumes": [1000]})
    run_dir = Runner(cfg, log=lambda *_: None).run()
    cells = {c["strategy"]: c for c in read_jsonl(run_dir / "cells.jsonl")}
    assert all(c["status"] == "ok" for c in cells.values())
    rag = cells["rag"]["update"]
    assert rag["method"] == "incremental re-index" and rag["docs_edited"] == 2
    assert rag["chunks_removed"] == rag["chunks_added"] == 2 and rag["check_agree"] == rag["check_queries"] > 0
    assert cells["trained"]["update"]["seconds"] == cells["trained"]["prepare_s"]
    assert cells["prompting"]["update"]["seconds"] == 0.0
    from reports import render_run

    render_run(run_dir)
    md = (run_dir / "summary.md").read_text()
    assert "Update cost" in md and "incremental re-index" in md and "retrain (estimate)" in md
    doc = json.loads((run_dir / "summary.json").read_text())
    by = {r["strategy"]: r for r in doc["update_cost"]}
    # $3600/h is $1 a second: the retrain costs its prepare seconds in dollars, 8 times a month.
    assert by["trained"]["usd_per_update"] == pytest.approx(cells["trained"]["prepare_s"])
    assert by["trained"]["updates_usd_per_month"] == pytest.approx(8 * cells["trained"]["prepare_s"])
    assert by["prompting"]["updates_usd_per_month"] == 0
    assert "Keeping current" in (run_dir / "report.html").read_text()


def test_compare_rebuild_is_off_by_default_and_a_flag_or_key_turns_it_on(tmp_path):
    from bench.cli import _parser
    from bench.run_flags import config_from_flags

    assert RunConfig(tasks=["squad"]).compare_rebuild is False
    with pytest.raises(BenchError, match="config.compare_rebuild: expected true or false"):
        RunConfig(tasks=["squad"], compare_rebuild="yes")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tasks: [product-facts]\ncorpus_change: 0.01\ncompare_rebuild: true\n")
    assert config_from_flags(_parser().parse_args(["run", str(cfg)])).compare_rebuild is True  # no flag: the file's
    args = _parser().parse_args(["run", "--tasks", "product-facts", "--corpus-change", "0.01", "--compare-rebuild"])
    assert config_from_flags(args).compare_rebuild is True


def test_the_flag_takes_a_fraction_or_a_file(tmp_path, capsys):
    from bench.cli import main

    assert main(["run", "--tasks", "product-facts", "--corpus-change", "1.5", "--out", str(tmp_path)]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert main(["run", "--tasks", "product-facts", "--corpus-change", str(tmp_path / "none.jsonl"),
                 "--out", str(tmp_path)]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err

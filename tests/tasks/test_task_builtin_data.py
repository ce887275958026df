"""The built-in tasks read from the embedded assets (CI fetches them first)."""
from collections import Counter

import pytest

from bench.assets import asset_path
from tasks import load_task
from tasks.bbc_news import MAX_WORDS, clip_article


def _all(task):
    return task.train + task.validation + task.test


def _assert_common(task):
    ids = [ex.id for ex in _all(task)]
    assert len(ids) == len(set(ids)), "example ids must be unique across splits"
    assert task.train and task.validation and task.test


@pytest.fixture(scope="module")
def rotten():
    return load_task("rotten-tomatoes")


@pytest.fixture(scope="module")
def bbc():
    return load_task("bbc-news")


@pytest.fixture(scope="module")
def squad():
    return load_task("squad")


def test_rotten_tomatoes_counts_and_labels(rotten):
    _assert_common(rotten)
    examples = _all(rotten)
    # 12,808 fresh/rotten rows in the file, 56 of them repeats of an earlier text
    assert len(examples) == 12_752
    assert len({ex.input for ex in examples}) == len(examples)
    assert set(rotten.labels) == {"fresh", "rotten"}
    assert {ex.target for ex in examples} == {"fresh", "rotten"}
    counts = Counter(ex.target for ex in rotten.test)
    assert abs(counts["fresh"] / len(rotten.test) - 7_403 / 12_808) < 0.01
    assert all(ex.id.startswith("rt-") for ex in examples[:100])
    assert Counter(ex.target for ex in rotten.test[:20])["rotten"] >= 6  # a limited run sees both labels


def test_rotten_tomatoes_is_seeded(rotten):
    again = load_task("rotten-tomatoes", seed=0)
    other = load_task("rotten-tomatoes", seed=1)
    assert [ex.id for ex in again.test] == [ex.id for ex in rotten.test]
    assert [ex.id for ex in other.test] != [ex.id for ex in rotten.test]


def test_bbc_news_labels_sizes_and_bounded_inputs(bbc):
    _assert_common(bbc)
    examples = _all(bbc)
    assert bbc.labels == ("business", "entertainment", "politics", "sport", "tech")
    assert {ex.target for ex in examples} == set(bbc.labels)
    assert 2_100 <= len(examples) <= 2_225  # 2,225 files, exact duplicates dropped
    assert bbc.corpus is None
    words = [len(ex.input.split()) for ex in examples]
    assert max(words) <= MAX_WORDS and min(words) >= 20
    assert all("\n" in ex.input for ex in examples)  # headline, then the lead
    assert len({ex.target for ex in bbc.test[:10]}) >= 4


def test_clip_article_cuts_at_a_sentence_end():
    body = " ".join(f"Sentence number {i} says something." for i in range(60))
    clipped = clip_article("A headline here\n\n" + body, max_words=40)
    headline, lead = clipped.split("\n")
    assert headline == "A headline here"
    assert lead.endswith("something.") and len(clipped.split()) <= 40


def test_squad_corpus_split_by_paragraph(squad):
    _assert_common(squad)
    assert len(squad.corpus) == 2_067
    assert len({d.id for d in squad.corpus}) == 2_067
    assert len(_all(squad)) == 10_565
    paragraphs = [{ex.meta["doc_ids"][0] for ex in part} for part in (squad.train, squad.validation, squad.test)]
    assert not paragraphs[0] & paragraphs[2] and not paragraphs[0] & paragraphs[1]
    assert not paragraphs[1] & paragraphs[2]
    docs = {d.id: d for d in squad.corpus}
    for ex in squad.test[:200]:
        assert ex.target == ex.answers[0]
        assert any(a in docs[ex.meta["doc_ids"][0]].text for a in ex.answers)
    assert squad.kind == "qa" and squad.metric == "f1"
    assert len({ex.meta["title"] for ex in squad.test[:30]}) >= 10  # test order mixes articles


def test_assets_are_the_pinned_files():
    # The loaders read these paths; a missing asset is a setup error, not a skip.
    assert asset_path("squad").name == "squaddev_v1.1.json"
    assert asset_path("rotten-tomatoes").name.endswith(".csv.bz2")

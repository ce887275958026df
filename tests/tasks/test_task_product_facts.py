"""The invented product catalogue: deterministic, unknowable, leak-free phrasings."""
import re
from collections import Counter

import pytest

from tasks import load_task
from tasks.product_facts import QUESTIONS, STOP_WORDS, catalogue, generate


@pytest.fixture(scope="module")
def task():
    return generate(seed=0)


def _fingerprint(task):
    return ([(ex.id, ex.input, ex.target) for ex in task.train + task.validation + task.test],
            [(d.id, d.text) for d in task.corpus])


def test_deterministic_per_seed_and_different_across_seeds(task):
    assert _fingerprint(generate(seed=0)) == _fingerprint(task)
    assert _fingerprint(load_task("product-facts", seed=0)) == _fingerprint(task)
    other = generate(seed=1)
    assert {ex.meta["product"] for ex in other.test} != {ex.meta["product"] for ex in task.test}
    assert [d.text for d in other.corpus] != [d.text for d in task.corpus]


def test_sizes_and_shape(task):
    assert 140 <= len({d.id.rsplit("-", 1)[0] for d in task.corpus}) <= 150
    assert 500 <= len(task.train) <= 1_200 and 150 <= len(task.test) <= 400 and task.validation
    assert task.kind == "qa" and task.metric == "f1" and task.max_new_tokens <= 16
    ids = [ex.id for ex in task.train + task.validation + task.test]
    assert len(ids) == len(set(ids))
    assert len({d.id for d in task.corpus}) == len(task.corpus)
    assert all(len(ex.target.split()) <= 3 for ex in task.test)


def test_every_product_has_at_least_six_attributes():
    products = catalogue(seed=0)
    assert len(products) == 150
    assert all(len(p.facts) >= 6 for p in products)
    assert any(p.variant_of is not None for p in products)


def test_names_are_not_english_words():
    products = catalogue(seed=0)
    words = {p.name.split()[0].lower() for p in products}
    words |= {p.facts["maker"].split()[0].lower() for p in products}
    assert len(words) >= 130  # ~113 originals and ~25 makers
    assert not words & STOP_WORDS
    assert all(re.fullmatch(r"[a-z]{5,9}", w) and set(w) & set("zqxvky") for w in words)


def test_distractors_differ_from_their_base():
    products = catalogue(seed=0)
    variants = [p for p in products if p.variant_of is not None]
    assert len(variants) >= 30
    for v in variants:
        base = products[v.variant_of]
        assert v.name.startswith(base.name + " ") and v.category == base.category
        assert all(v.facts[a] != base.facts[a] for a in ("price", "weight", "colour", "year"))


def _skeleton(ex):
    return ex.input.replace(ex.meta["product"], "<P>")


def test_test_phrasings_never_appear_in_train(task):
    train_templates = {ex.meta["template"] for ex in task.train}
    held_out = {ex.meta["template"] for ex in task.validation + task.test}
    assert not train_templates & held_out
    assert not {_skeleton(ex) for ex in task.train} & {_skeleton(ex) for ex in task.test}
    assert not {ex.input for ex in task.train} & {ex.input for ex in task.test}
    all_templates = {t.format(p="<P>", P="<P>") for ts in QUESTIONS.values() for t in ts}
    assert {_skeleton(ex).replace("the <P>", "<P>").replace("The <P>", "<P>") for ex in task.train} <= all_templates


def test_test_facts_are_taught_in_train(task):
    taught = Counter(ex.meta["fact"] for ex in task.train)
    for ex in task.test:
        assert taught[ex.meta["fact"]] == 3
    answers = {(ex.meta["fact"], ex.target) for ex in task.train}
    assert all((ex.meta["fact"], ex.target) in answers for ex in task.test)


def test_every_test_answer_is_in_a_gold_document(task):
    docs = {d.id: d.text for d in task.corpus}
    for ex in task.test + task.validation:
        assert ex.target in ex.answers
        assert any(ex.target in docs[d] for d in ex.meta["doc_ids"]), ex


def test_test_prefix_covers_many_attributes(task):
    assert len({ex.meta["attribute"] for ex in task.test[:30]}) >= 7


def test_generate_scales_down_for_quick_tests():
    small = generate(seed=5, n_products=20)
    assert 15 <= len({ex.meta["product"] for ex in small.train}) <= 20
    assert small.test and small.validation

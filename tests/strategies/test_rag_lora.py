"""rag-lora (RAFT-style): training prompts hold distractors and, for a share p_oracle,
the gold passage; without a corpus they hold rag's dynamic demonstrations (never the
example itself); prediction is rag's retrieval through the adapted weights."""
import random

import pytest

from bench.errors import BenchError
from fakes import HashingEmbedder, toy_classification, toy_qa
from strategies import rag_lora
from strategies.base import Budget


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path))


def strategy(**options):
    cfg = rag_lora.RagLoraConfig(**{"top_k": 2, "max_steps": 2, "batch_size": 4, "probe_examples": 4, **options})
    return rag_lora.RagLoraStrategy(cfg, embedder=HashingEmbedder())


@pytest.mark.parametrize("p_oracle", [0.0, 1.0])
def test_training_prompts_hold_distractors_and_the_gold_passage_for_p_oracle(tiny, p_oracle):
    task = toy_qa()
    s = strategy(p_oracle=p_oracle, distractors=2)
    st = s.rag.prepare(task, tiny, Budget()).state
    prompts = rag_lora.corpus_prompts(st, s.rag.config, s.config, task, tiny, task.train, random.Random(0))
    for ex, prompt in zip(task.train, prompts):
        gold = next(d for d in task.corpus if d.id == ex.meta["doc_ids"][0])
        others = [d for d in task.corpus if d.id != gold.id and d.text in prompt]
        assert (gold.text in prompt) == (p_oracle == 1.0)
        assert len(others) == 2  # exactly `distractors` non-gold passages


def test_without_a_corpus_it_trains_on_rags_demonstrations_never_itself(tiny):
    task = toy_classification()
    s = strategy(demos_k=2)
    st = s.rag.prepare(task, tiny, Budget()).state
    from strategies.rag import retrieval_prompts

    prompts, retrieved, _ = retrieval_prompts(st, s.rag.config, task, tiny, task.train, exclude_self=True)
    assert all(ex.id not in ids and len(ids) == 2 for ex, ids in zip(task.train, retrieved))
    assert all(ex.input in p for ex, p in zip(task.train, prompts))


def test_it_trains_and_predicts_with_rags_retrieval(tiny, tmp_path):
    task = toy_qa()
    s = strategy(max_steps=4, epochs=4, learning_rate=0.05)
    art = s.prepare(task, tiny, Budget(seed=0, workdir=tmp_path))
    assert art.info["mode"] == "corpus" and art.info["steps"] == 4 and art.info["trainable_params"] > 0
    assert art.state["model"].fingerprint.startswith(tiny.fingerprint + ":rag-lora:")
    preds = s.predict(art, task.test)
    plain = s.rag.predict(s.rag.prepare(task, tiny, Budget(seed=0)), task.test)
    assert [p.retrieved_ids for p in preds] == [p.retrieved_ids for p in plain]  # the same retrieval as rag
    assert [p.prompt_tokens for p in preds] == [p.prompt_tokens for p in plain]  # ...and the same prompts


def test_options_are_checked():
    with pytest.raises(BenchError, match=r"rag-lora.p_oracle must be a number in \[0, 1\]"):
        rag_lora.RagLoraConfig(p_oracle=1.5)
    with pytest.raises(BenchError, match="rag.retriever"):
        rag_lora.RagLoraConfig(retriever="nope")

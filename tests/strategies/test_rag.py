"""RAG: chunking, retrieval into prompts and predictions, the on-disk index cache,
index types, dynamic few-shot, config validation. Fakes only, except the one test
marked slow that retrieves with the real embedded MiniLM."""
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from bench.errors import BenchError
from fakes import FakeHandle, HashingEmbedder, tiny_handle, toy_classification, toy_qa
from strategies.base import Budget
from strategies.chunking import chunk_documents, windows
from strategies.rag import RagConfig, RagStrategy, build, build_index
from tasks.model import Document


from bench.paths import cache_root

ASSET_CACHE = str(cache_root())  # where the real embedder's asset lives, before tests move the cache


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch):
    # Each test gets an empty index cache; assets are not needed with fakes.
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path))
    return tmp_path / "indexes"


@dataclass(frozen=True)
class RecordingHandle(FakeHandle):
    prompts: list = field(default_factory=list)

    def generate(self, prompts, max_new_tokens=32, batch_size=8, progress=None):
        self.prompts.extend(prompts)
        return super().generate(prompts, max_new_tokens, batch_size, progress)

    def score_choices(self, prompts, choices, batch_size=16, progress=None):
        self.prompts.extend(prompts)
        return super().score_choices(prompts, choices, batch_size, progress)


class CountingEmbedder(HashingEmbedder):
    def __init__(self, delay: float = 0.0, **kw) -> None:
        super().__init__(**kw)
        self.calls, self.delay = 0, delay

    def encode(self, texts, batch_size=32, **kw):
        self.calls += 1
        time.sleep(self.delay)
        return super().encode(texts, batch_size, **kw)


def rag(embedder=None, **options) -> RagStrategy:
    return RagStrategy(RagConfig(**options), embedder=embedder or HashingEmbedder())


@pytest.mark.parametrize("n,size,overlap", [(1, 5, 2), (5, 5, 2), (6, 5, 2), (100, 16, 4), (101, 16, 0), (37, 8, 7)])
def test_windows_cover_every_token_with_the_overlap(n, size, overlap):
    spans = windows(n, size, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(0 < e - s <= size for s, e in spans)
    covered = set().union(*(range(s, e) for s, e in spans))
    assert covered == set(range(n))
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        assert s2 > s1 and e1 - s2 == overlap  # exactly the configured overlap
    assert windows(0, size, overlap) == []


@pytest.mark.parametrize("tokenizer", [None, tiny_handle().tokenizer], ids=["words", "bpe"])
def test_chunks_map_back_to_their_document(tokenizer):
    docs = [Document(f"doc{j}", " ".join(f"w{j}x{i}" for i in range(57)), f"T{j}") for j in range(3)]
    chunks = chunk_documents(docs, tokenizer, size=12, overlap=3)
    for doc in docs:
        mine = [c for c in chunks if c.doc_id == doc.id]
        assert len(mine) > 1 and all(c.text in doc.text for c in mine)  # cut from its own doc
        ranges = [range(doc.text.index(c.text), doc.text.index(c.text) + len(c.text)) for c in mine]
        covered = set().union(*ranges)
        assert {i for i, ch in enumerate(doc.text) if not ch.isspace()} <= covered  # nothing lost
        for a, b in zip(ranges, ranges[1:]):
            assert a.start < b.start < a.stop  # consecutive chunks overlap
        assert all(c.end - c.start <= 12 for c in mine) and mine[-1].end >= 57


def test_retrieval_finds_the_gold_document_and_puts_it_in_the_prompt():
    task, handle = toy_qa(), RecordingHandle()
    strategy = rag(top_k=2)
    artifacts = strategy.prepare(task, handle, Budget())
    assert artifacts.info["mode"] == "corpus" and artifacts.info["index"] == "flat"
    assert artifacts.info["n_documents"] == artifacts.info["n_chunks"] == 8
    queries = task.train + task.test
    preds = strategy.predict(artifacts, queries)
    texts = {d.id: d.text for d in task.corpus}
    for ex, pred, prompt in zip(queries, preds, handle.prompts):
        gold = ex.meta["doc_ids"][0]
        assert pred.retrieved_ids[0] == gold and len(set(pred.retrieved_ids)) == 2
        assert texts[gold] in prompt and "Context:" in prompt
        assert prompt.index(texts[gold]) < prompt.index(ex.input)


def test_predictions_carry_ids_and_the_retrieval_latency():
    task = toy_qa()
    strategy = rag(CountingEmbedder(delay=0.05), top_k=1)
    artifacts = strategy.prepare(task, FakeHandle(), Budget())
    preds = strategy.predict(artifacts, task.test)
    assert [p.example_id for p in preds] == [ex.id for ex in task.test]
    # One batched query embedding (>= 50 ms) shared by 2 queries, on top of the 1 ms model time.
    assert all(p.latency_s >= 0.001 + 0.05 / len(task.test) for p in preds)
    assert all(p.output == "Paris" and len(p.retrieved_ids) == 1 for p in preds)
    assert strategy.predict(artifacts, []) == []


def test_disk_cache_hits_without_embedding_and_misses_on_changes(index_cache):
    task = toy_qa()
    first = CountingEmbedder()
    a1 = rag(first).prepare(task, FakeHandle(), Budget())
    assert not a1.info["cached"] and first.calls > 0 and len(list(index_cache.glob("*.npz"))) == 1

    again = CountingEmbedder()
    a2 = rag(again).prepare(task, FakeHandle(), Budget())
    assert a2.info["cached"] and again.calls == 0
    assert a2.state["texts"] == a1.state["texts"] and a2.state["ids"] == a1.state["ids"]
    assert rag(again).predict(a2, task.test)[0].retrieved_ids == rag().predict(a1, task.test)[0].retrieved_ids

    other_chunks = CountingEmbedder()
    assert not rag(other_chunks, chunk_tokens=4, chunk_overlap=1).prepare(task, FakeHandle(), Budget()).info["cached"]
    assert other_chunks.calls > 0
    changed = toy_qa()
    changed.corpus[0] = replace(changed.corpus[0], text="The Zorblat gadget is now pink.")
    assert not rag(CountingEmbedder()).prepare(changed, FakeHandle(), Budget()).info["cached"]
    assert not rag(CountingEmbedder(dim=32)).prepare(task, FakeHandle(), Budget()).info["cached"]  # other embedder


def test_damaged_cache_file_is_rebuilt(index_cache):
    task = toy_qa()
    rag().prepare(task, FakeHandle(), Budget())
    (path,) = index_cache.glob("*.npz")
    path.write_bytes(b"not an index")
    embedder = CountingEmbedder()
    assert not rag(embedder).prepare(task, FakeHandle(), Budget()).info["cached"] and embedder.calls > 0


def _clustered(n, dim, seed):
    # Real sentence embeddings are clustered, not isotropic: uniform random 384-d vectors
    # are a worst case where every neighbour is almost equally far (HNSW recall ~0.7 there).
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, dim))
    x = centres[rng.integers(0, 200, n)] + 0.8 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_hnsw_recall_at_10_against_flat():
    data = _clustered(20_200, 384, 0)
    x, queries = data[:20_000], data[20_000:]  # queries from the same distribution, not indexed
    flat, kind = build_index(x, RagConfig(index="flat"))
    hnsw, hkind = build_index(x, RagConfig(index="auto", flat_max=10_000))  # auto goes HNSW above flat_max
    assert (kind, hkind) == ("flat", "hnsw")
    hnsw.hnsw.efSearch = RagConfig().ef_search
    _, truth = flat.search(queries, 10)
    _, found = hnsw.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.95


def test_ivf_index_is_built_on_request_and_searches():
    x = _clustered(2_000, 64, 2)
    index, kind = build_index(x, RagConfig(index="ivf", ivf_nlist=16))
    assert kind == "ivf" and index.is_trained and index.ntotal == 2_000
    index.nprobe = 16
    _, rows = index.search(x[:20], 1)
    assert list(rows[:, 0]) == list(range(20))  # with every list probed, each vector finds itself
    strategy = rag(index="ivf")
    artifacts = strategy.prepare(toy_qa(), FakeHandle(), Budget())
    assert artifacts.info["index"] == "ivf"
    assert all(p.retrieved_ids for p in strategy.predict(artifacts, toy_qa().test))


def test_dynamic_few_shot_puts_the_nearest_train_examples_last():
    task, handle, embedder = toy_classification(), RecordingHandle(), HashingEmbedder()
    strategy = rag(embedder, demos_k=3)
    artifacts = strategy.prepare(task, handle, Budget())
    assert artifacts.info["mode"] == "dynamic-few-shot" and artifacts.info["n_chunks"] == len(task.train)
    preds = strategy.predict(artifacts, task.test)
    train_vecs = embedder.encode([ex.input for ex in task.train])
    for ex, pred, prompt in zip(task.test, preds, handle.prompts):
        sims = train_vecs @ embedder.encode([ex.input])[0]
        by_id = {t.id: t for t in task.train}
        got = [float(sims[task.train.index(by_id[i])]) for i in pred.retrieved_ids]
        assert got == pytest.approx(sorted(sims, reverse=True)[:3], abs=1e-5)  # the 3 nearest, best first
        positions = [prompt.index(by_id[i].input + "\n") for i in pred.retrieved_ids]
        assert positions == sorted(positions, reverse=True)  # most similar sits nearest the query
        assert positions[0] < prompt.index(ex.input)


def test_dynamic_few_shot_pool_is_capped():
    artifacts = rag(max_train_examples=5).prepare(toy_classification(), FakeHandle(), Budget(max_train_examples=3))
    assert artifacts.info["n_chunks"] == 3


def test_end_to_end_with_a_tiny_model_fits_the_context():
    task, handle = toy_qa(), tiny_handle(max_context=96)
    strategy = rag(top_k=3)
    preds = strategy.predict(strategy.prepare(task, handle, Budget()), task.test)
    assert len(preds) == 2 and all(p.prompt_tokens + task.max_new_tokens <= 96 for p in preds)


def test_config_is_validated():
    with pytest.raises(BenchError, match="top_kk.*top_k"):
        build({"top_kk": 3})
    for bad in ({"chunk_overlap": 180}, {"index": "annoy"}, {"top_k": 0}, {"embedder": ""}):
        with pytest.raises(BenchError):
            build(bad)
    assert build({"index": "HNSW"}).config.index == "hnsw" and build().name == "rag"


def test_chunks_must_fit_the_embedder():
    small = HashingEmbedder()
    small.max_tokens = 64
    with pytest.raises(BenchError, match="chunk_tokens"):
        rag(small).prepare(toy_qa(), FakeHandle(), Budget())


@pytest.mark.slow
def test_real_embedder_retrieves_the_relevant_passage():
    from bench.embedder import load_embedder

    # A missing asset is a setup error (run `bench assets fetch`), never a skip.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADAPTBENCH_CACHE", ASSET_CACHE)
        embedder = load_embedder()
    task = toy_qa()
    task.corpus = [Document("paris", "Paris is the capital and largest city of France.", "Paris"),
                   Document("photo", "Photosynthesis turns light, water and carbon dioxide into sugar.", ""),
                   Document("ww2", "The Second World War ended in 1945 after six years of fighting.", "")]
    strategy = rag(embedder, top_k=1, chunk_tokens=8, chunk_overlap=2)
    artifacts = strategy.prepare(task, FakeHandle(), Budget())
    assert artifacts.info["n_chunks"] > 3 and artifacts.info["dim"] == 384
    queries = [replace(task.test[0], input=q) for q in
               ("Which city is France's capital?", "How do plants make sugar from light?", "When did WWII end?")]
    assert [p.retrieved_ids for p in strategy.predict(artifacts, queries)] == [("paris",), ("photo",), ("ww2",)]


def test_context_shots_show_a_train_answer_with_its_gold_passage():
    task, handle = toy_qa(), RecordingHandle()
    strategy = rag(top_k=1, shots=2)
    artifacts = strategy.prepare(task, handle, Budget(seed=3))
    shots = artifacts.state["shots"]
    assert len(shots) == 2 and artifacts.info["shots"] == 2
    train = {ex.input: ex for ex in task.train}
    texts = {d.id: d.text for d in task.corpus}
    for user, answer in shots:
        question = next(q for q in train if q in user)
        example = train[question]
        assert answer == example.target
        assert texts[example.meta["doc_ids"][0]] in user  # the passage that holds the answer
    strategy.predict(artifacts, task.test)
    for prompt in handle.prompts:
        assert all(answer in prompt for _, answer in shots)
    none = rag(top_k=1, shots=0).prepare(task, handle, Budget())
    assert none.state["shots"] == []

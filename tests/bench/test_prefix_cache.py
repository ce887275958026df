"""The static prefix cache (bench/backends/prefix.py) gives the uncached path's results:
labels and log-probabilities to 1e-4, greedy text identical, on the tiny model."""
import dataclasses

import pytest

from bench.backends.prefix import MIN_PREFIX, common_prefix
from strategies.prompts import build_prompt, pick_demos


def test_common_prefix_leaves_a_token_of_every_sequence():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # never the whole prompt
    assert common_prefix([[7, 1], [8, 1]]) == 0 and common_prefix([]) == 0


@pytest.fixture
def shot_prompts(tiny, toy_task):
    demos = pick_demos(toy_task.train, 4, 0, toy_task.labels)
    # Different lengths, so batches are padded between the prefix and the query.
    return [build_prompt(tiny, toy_task, ex.input + " really" * (i % 3), demos=demos)
            for i, ex in enumerate(toy_task.test)]


def test_scoring_with_the_prefix_cache_equals_the_uncached_path(tiny, toy_task, shot_prompts):
    cached, plain = (dataclasses.replace(tiny, prefix_cache=on, max_context=512) for on in (True, False))
    labels = ["positive", "negative", "a great movie"]  # a multi-token choice continues from the cache
    got = cached.score_choices(shot_prompts, labels, batch_size=3)
    want = plain.score_choices(shot_prompts, labels, batch_size=3)
    kv = cached._prefixes.find(cached.model, [cached.encode(p) for p in shot_prompts])
    assert kv is not None and kv.length >= MIN_PREFIX  # the cached path really ran
    assert [g.best for g in got] == [w.best for w in want]
    for g, w in zip(got, want):
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
        assert g.prompt_tokens == w.prompt_tokens
    # Later calls (one prompt at a time, as the latency probe runs) reuse the remembered prefix.
    one = cached.score_choices(shot_prompts[:1], labels, batch_size=1)[0]
    assert one.logprobs == pytest.approx(want[0].logprobs, abs=1e-4)


def test_generation_with_the_prefix_cache_is_identical(tiny, shot_prompts):
    cached, plain = (dataclasses.replace(tiny, prefix_cache=on, max_context=512) for on in (True, False))
    got = cached.generate(shot_prompts, max_new_tokens=8, batch_size=3)
    want = plain.generate(shot_prompts, max_new_tokens=8, batch_size=3)
    assert cached._prefixes._items  # computed once for the call
    assert [g.text for g in got] == [w.text for w in want]
    assert [g.completion_tokens for g in got] == [w.completion_tokens for w in want]
    assert [g.prompt_tokens for g in got] == [w.prompt_tokens for w in want]


def test_a_changed_model_does_not_reuse_a_prefix(tiny, shot_prompts):
    cached = dataclasses.replace(tiny, prefix_cache=True)
    seqs = [cached.encode(p) for p in shot_prompts]
    kv = cached._prefixes.find(cached.model, seqs)
    other = dataclasses.replace(cached, model=__import__("fakes").tiny_model(len(tiny.tokenizer), seed=1))
    assert other._prefixes.find(other.model, seqs[:1]) is None  # a fresh memo per backend
    assert cached._prefixes.find(other.model, seqs[:1]) is None  # keyed by the model too
    assert cached._prefixes.find(cached.model, seqs[:1]) is kv


def test_a_model_that_prepends_virtual_tokens_gets_no_prefix(tiny, shot_prompts):
    class Wrapped:  # like a soft-prompt wrapper: no config, its own forward
        def __init__(self, inner):
            self.inner = inner

        def parameters(self):
            return self.inner.parameters()

    cached = dataclasses.replace(tiny, model=Wrapped(tiny.model))
    assert cached._prefix([cached.encode(p) for p in shot_prompts]) is None

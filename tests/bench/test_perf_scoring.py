"""Label scoring in one forward pass (bench/backends/hf.py `_score_one_pass`): the same
labels and log-probs (within 1e-4) as the per-choice KV-cache path and as a plain full
forward of prompt + label, with and without the prefix cache."""
import pytest
import torch

from bench.backends import hf

PROMPTS = ["the capital of France is", "good movie review:", "Question: bad film?\nAnswer:",
           "the film was fine and the review was poor, the capital of France is Paris and",
           "awful", "Options: yes no Input: great"]


def reference(lm, prompts, choices):
    """log p(choice | prompt) from one plain forward of prompt + choice each."""
    out = []
    for p in prompts:
        ids = lm.encode(p)
        row = []
        for c in choices:
            cont = lm.encode(c)
            with torch.no_grad():
                logits = lm.model(input_ids=torch.tensor([ids + cont])).logits[0].float()
            logp = torch.log_softmax(logits, -1)
            row.append(float(sum(logp[len(ids) - 1 + i, t] for i, t in enumerate(cont))))
        out.append(row)
    return torch.tensor(out)


def scored(lm, prompts, choices, batch_size=4):
    return torch.tensor([s.logprobs for s in lm.score_choices(prompts, choices, batch_size=batch_size)])


def words(lm, n_tokens):
    found = [w for w in ("good", "bad", "great", "fine", "poor", "awful", "movie", "film", "yes", "no", "Paris",
                         "review", "capital", "France") if len(lm.encode(w)) == n_tokens]
    assert len(found) >= 2, f"the tiny tokenizer has too few {n_tokens}-token words"
    return found


def test_shared_run_finds_the_one_pass_labels():
    assert hf._shared_run([[5], [7]]) == []
    assert hf._shared_run([[5], [8, 9]]) == [8]
    assert hf._shared_run([[8], [8, 9], [8, 9, 4], [8, 9, 6]]) == [8, 9]
    assert hf._shared_run([[5, 1], [7, 2]]) is None  # they branch before their last token


@pytest.mark.parametrize("kind", ["single", "shared run", "branching"])
def test_one_pass_equals_the_cache_path_and_a_plain_forward(tiny, monkeypatch, kind):
    one = words(tiny, 1)
    multi = [w + " " + v for w in one[:1] for v in one[1:3]]
    choices = {"single": one[:3], "shared run": [one[2], *multi],
               "branching": [one[0] + " " + one[1], one[1] + " " + one[0]]}[kind]
    ids = [tiny.encode(c) for c in choices]
    assert (hf._shared_run(ids) is None) == (kind == "branching")
    got = scored(tiny, PROMPTS, choices)
    monkeypatch.setattr(hf, "_shared_run", lambda ids: None)  # today's path: each choice from the cache
    cached = scored(tiny, PROMPTS, choices)
    torch.testing.assert_close(got, cached, rtol=0, atol=1e-4)
    torch.testing.assert_close(got, reference(tiny, PROMPTS, choices), rtol=0, atol=1e-4)


def test_one_pass_with_the_prefix_cache_equals_no_cache(tiny):
    import dataclasses

    one = words(tiny, 1)
    choices = [one[0], one[1] + " " + one[2], one[1] + " " + one[3 % len(one)]]
    start = "Options: positive negative yes no. Question: the capital of France is Paris. "
    prompts = [start + p for p in PROMPTS]
    assert len(tiny.encode(start)) >= 16
    plain = dataclasses.replace(tiny, prefix_cache=False)
    with_prefix = dataclasses.replace(tiny, prefix_cache=True)
    got = scored(with_prefix, prompts, choices)
    assert with_prefix._prefixes._items  # the prefix was computed and used
    torch.testing.assert_close(got, scored(plain, prompts, choices), rtol=0, atol=1e-4)
    torch.testing.assert_close(got, reference(tiny, prompts, choices), rtol=0, atol=1e-4)

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


@pytest.mark.parametrize("start", [0, 20])
def test_pack_puts_several_prompts_in_a_row_each_seeing_only_itself(start):
    from bench.backends.packing import pack

    seqs = [[1] * 9, [2] * 3, [3] * 4, [4] * 2, [5] * 5]
    p = pack(seqs, tail=2, pad_id=0, start=start)
    assert p.ids.shape[0] < len(seqs) and p.ids.shape[1] == 9  # packed, no row wider than the longest
    assert (p.ids != 0).sum() == sum(map(len, seqs))
    mask = p.mask[:, 0, :, start:]
    assert p.mask[:, 0, :, :start].all()  # the cached prefix: seen by every token
    for i, s in enumerate(seqs):
        row, col = p.tails[i]
        tail_cols = p.ids.shape[1] - p.keep + col + torch.arange(2)
        assert p.ids[row, tail_cols].tolist() == s[-2:]
        assert p.positions[row, tail_cols].tolist() == [start + len(s) - 2, start + len(s) - 1]
        last = tail_cols[-1]
        # The last token sees exactly its own prompt's tokens: len(s) of them, all its value.
        assert mask[row, last].sum() == len(s) and set(p.ids[row][mask[row, last]].tolist()) == {s[0]}
    pads = p.ids == 0
    assert (mask.sum(-1)[pads] == 1).all()  # padding sees itself only ...
    for r in range(p.ids.shape[0]):  # ... and no real token sees padding
        real = ~pads[r]
        assert not mask[r][real][:, pads[r]].any()


@pytest.mark.parametrize("with_prefix", [False, True])
def test_packed_scoring_equals_the_padded_one_pass(tiny, monkeypatch, with_prefix):
    import dataclasses

    from bench.backends import packing

    one = words(tiny, 1)
    choices = [one[0], one[1] + " " + one[2], one[1] + " " + one[3 % len(one)]]
    start = "Options: positive negative yes no. Question: the capital of France is Paris. " if with_prefix else ""
    prompts = [start + p for p in PROMPTS]
    assert packing.can_pack(tiny.model)
    calls = []
    real_pack = packing.pack
    monkeypatch.setattr(packing, "pack", lambda *a, **k: calls.append(real_pack(*a, **k)) or calls[-1])
    got = scored(tiny, prompts, choices, batch_size=6)
    assert calls and calls[0].ids.shape[0] < len(prompts)  # rows held several prompts
    padded = scored(dataclasses.replace(tiny, pack_prompts=False), prompts, choices, batch_size=6)
    torch.testing.assert_close(got, padded, rtol=0, atol=1e-4)
    torch.testing.assert_close(got, reference(tiny, prompts, choices), rtol=0, atol=1e-4)


def test_packed_scoring_with_eager_attention_takes_an_additive_mask():
    import dataclasses

    from fakes import tiny_handle

    lm = tiny_handle(seed=11)
    lm.model.set_attn_implementation("eager")
    assert lm.model.config._attn_implementation == "eager"
    one = words(lm, 1)
    choices = [one[0], one[1] + " " + one[2]]
    got = scored(lm, PROMPTS, choices, batch_size=6)
    torch.testing.assert_close(got, scored(dataclasses.replace(lm, pack_prompts=False), PROMPTS, choices, batch_size=6),
                               rtol=0, atol=1e-4)
    torch.testing.assert_close(got, reference(lm, PROMPTS, choices), rtol=0, atol=1e-4)

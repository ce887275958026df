"""Batched generation and choice scoring on the tiny in-process model: the bench's own
code around the model (sorting, padding, decoding) is what changes between commits."""
PROMPTS = ["the capital of France is", "good", "a great movie review of the film, fine and good",
           "bad awful poor", "Question: what is the capital", "positive negative yes no"] * 4


def test_batched_generate(benchmark, tiny):
    rendered = [tiny.render(p) for p in PROMPTS]
    out = benchmark(tiny.generate, rendered, max_new_tokens=8, batch_size=8)
    assert len(out) == len(PROMPTS) and all(0 < g.completion_tokens <= 8 for g in out)


def test_score_choices(benchmark, tiny):
    rendered = [tiny.render(p) for p in PROMPTS]
    out = benchmark(tiny.score_choices, rendered, ["positive", "negative"], batch_size=16)
    assert len(out) == len(PROMPTS) and all(s.best in (0, 1) for s in out)

"""Batched generation and choice scoring against the plain per-example computation."""
import torch

from fakes import tiny_handle

PROMPTS = ["the capital of France is", "good", "a great movie review of the film, fine and good",
           "bad awful poor", "Question: what is the capital"]


def test_batched_generation_equals_one_by_one():
    handle = tiny_handle(seed=1)
    rendered = [handle.render(p) for p in PROMPTS]
    batched = handle.generate(rendered, max_new_tokens=6, batch_size=3)
    single = [handle.generate([p], max_new_tokens=6, batch_size=1)[0] for p in rendered]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.prompt_tokens for g in batched] == [handle.count_tokens(p) for p in rendered]
    assert all(0 < g.completion_tokens <= 6 for g in batched)


def test_outputs_come_back_in_caller_order():
    handle = tiny_handle(seed=2)
    rendered = [handle.render(p) for p in PROMPTS]
    forward = handle.generate(rendered, max_new_tokens=4, batch_size=2)
    backward = handle.generate(rendered[::-1], max_new_tokens=4, batch_size=2)
    assert [g.text for g in forward] == [g.text for g in backward][::-1]


def test_choice_scores_equal_manual_log_likelihood():
    """Left padding, the shared prompt cache and multi-token choices change nothing."""
    handle = tiny_handle(seed=3)
    prompts = [handle.render("is this good or bad? a long prompt to force padding"), handle.render("x")]
    choices = ["good", "bad awful poor", "fine"]
    scores = handle.score_choices(prompts, choices, batch_size=3)
    for i, prompt in enumerate(prompts):
        ctx = handle.encode(prompt)
        for j, choice in enumerate(choices):
            cont = handle.encode(choice)
            with torch.no_grad():
                logp = torch.log_softmax(handle.model(input_ids=torch.tensor([ctx + cont])).logits[0], -1)
            manual = sum(float(logp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))
            assert abs(scores[i].logprobs[j] - manual) < 1e-4, (i, j)
        assert scores[i].best == max(range(3), key=lambda j: scores[i].logprobs[j])


def test_overlong_prompt_is_truncated_from_the_left_and_flagged():
    handle = tiny_handle(seed=0, max_context=64)
    long_prompt = "good " * 200 + "the end"
    out = handle.generate([long_prompt], max_new_tokens=4)[0]
    assert out.truncated and out.prompt_tokens == 60
    short = handle.generate(["good"], max_new_tokens=4)[0]
    assert not short.truncated


def test_render_places_demonstrations_before_the_question():
    handle = tiny_handle()
    text = handle.render("Q2", shots=[("Q1", "A1")])
    assert text.index("Q1") < text.index("A1") < text.index("Q2")
    assert text.endswith("<|im_start|>assistant\n")


def test_a_prompt_budgeted_then_generated_is_tokenised_once():
    handle = tiny_handle(seed=4)
    calls = []
    tokenizer = handle.tokenizer
    original = tokenizer.__class__.__call__

    def counting(self, text, *args, **kwargs):
        calls.append(text)
        return original(self, text, *args, **kwargs)

    prompt = handle.render(PROMPTS[2])
    tokenizer.__class__.__call__ = counting
    try:
        n = handle.count_tokens(prompt)
        out = handle.generate([prompt], max_new_tokens=3)
        ids = handle.encode(prompt)
        ids.append(-1)  # callers get a copy; the memo stays intact
    finally:
        tokenizer.__class__.__call__ = original
    assert calls.count(prompt) == 1
    assert out[0].prompt_tokens == n == len(handle.encode(prompt))

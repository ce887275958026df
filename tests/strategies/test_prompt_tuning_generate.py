"""Prompt tuning generates the same answer for a prompt whatever else is in its batch:
left padding must not move the prompt's positions relative to the virtual tokens."""
from __future__ import annotations

import torch

from fakes import toy_qa
from strategies import prompt_tuning


def test_answer_does_not_depend_on_the_batch_and_matches_the_scoring_forward(tiny):
    cfg = prompt_tuning.PromptTuningConfig(num_virtual_tokens=4, init="random")
    torch.manual_seed(0)
    soft = prompt_tuning.wrap(tiny.torch_model, cfg, toy_qa(), tiny)
    with torch.no_grad():  # large virtual tokens, so their positions visibly matter
        soft.peft.prompt_encoder[soft.peft.active_adapter].embedding.weight.mul_(40)
    lm = tiny.with_adapter(soft, "soft-test")
    short = "Q: capital of France?\nA:"
    long = "Q: " + "a very long question about many things " * 6 + "?\nA:"
    alone = lm.generate([short], max_new_tokens=6, batch_size=1)[0]
    batched = lm.generate([short, long], max_new_tokens=6, batch_size=2)[0]
    assert batched.text == alone.text and batched.completion_tokens == alone.completion_tokens
    # Logits, not just the greedy text (the tiny model's text hides a shift): PEFT's own
    # generate moved them by 5e-4 here, with 184 pads between the virtual tokens and the prompt.
    kw = dict(max_new_tokens=1, do_sample=False, output_scores=True, return_dict_in_generate=True,
              pad_token_id=lm.pad_token_id)
    one, one_mask = lm._left_pad([lm.encode(short)])
    two, two_mask = lm._left_pad([lm.encode(short), lm.encode(long)])
    with torch.inference_mode():
        a = soft.generate(input_ids=one, attention_mask=one_mask, **kw).scores[0][0]
        b = soft.generate(input_ids=two, attention_mask=two_mask, **kw).scores[0][0]
    assert (a - b).abs().max() < 1e-5

    # Its first token is the argmax of the forward that training and label scoring use.
    ids = torch.tensor([lm.encode(short)])
    positions = torch.arange(ids.shape[1]).unsqueeze(0)
    with torch.inference_mode():
        logits = soft(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions).logits
    first = int(logits[0, -1].argmax())
    with torch.inference_mode():
        out = soft.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                            do_sample=False, pad_token_id=lm.pad_token_id)
    assert out.shape == (1, ids.shape[1] + 1) and torch.equal(out[0, :-1], ids[0])  # PEFT's layout
    assert int(out[0, -1]) == first

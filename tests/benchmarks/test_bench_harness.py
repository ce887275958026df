"""The harness's per-example overhead: everything between the model and the store
(prompt building, prediction bookkeeping, scoring rows), with a fake model answering
instantly, so any time measured here is the harness's own."""
from bench.runner import score_rows
from fakes import toy_classification, toy_qa
from strategies.prompts import build_prompt, predict_prompts


def _examples(task, n):
    return [ex for _ in range(n // len(task.test) + 1) for ex in task.test][:n]


def test_prompts_predictions_and_rows_per_example(benchmark, fake_handle):
    task = toy_qa()
    examples = _examples(task, 500)

    def harness():
        prompts = [build_prompt(fake_handle, task, ex.input, passages=["a passage"] * 3) for ex in examples]
        preds = predict_prompts(fake_handle, task, examples, prompts)
        return score_rows("cell", task, "rag", "fake", 0, examples, preds)

    rows = benchmark(harness)
    assert len(rows) == 500 and all(r["output"] == "Paris" for r in rows)


def test_classification_rows_per_example(benchmark, fake_handle):
    task = toy_classification()
    examples = _examples(task, 500)

    def harness():
        prompts = [build_prompt(fake_handle, task, ex.input) for ex in examples]
        return score_rows("cell", task, "prompting", "fake", 0, examples,
                          predict_prompts(fake_handle, task, examples, prompts))

    rows = benchmark(harness)
    assert len(rows) == 500 and {r["score"] for r in rows} <= {0.0, 1.0}

"""The learning-curve section from planted run folders: a crossover with separated
intervals, one where the intervals overlap at every size, none within the sizes tried."""
import pytest

from bench.store import RunStore, cell_id
from reports import render_run
from reports.curves import about, learning_curve
from reports.frame import load_run
from reports.summary import summarize

MODEL = "tiny-llama"


def build(root, scores: dict[str, float], n: int) -> None:
    """One task; each label's cell answers `n` examples with the planted accuracy."""
    store = RunStore(root)
    for label, accuracy in scores.items():
        cell = cell_id("sentiment", label, MODEL, 0)
        right = round(accuracy * n)
        store.append_rows([{"cell": cell, "task": "sentiment", "strategy": label, "model": MODEL, "seed": 0,
                            "example_id": f"ex{i}", "input": f"review {i}", "target": "positive",
                            "output": "positive" if i < right else "negative", "score": float(i < right),
                            "exact_match": None, "f1": None, "latency_s": 0.1, "prompt_tokens": 40,
                            "completion_tokens": 1, "retrieved_ids": [], "recall_at_k": None, "truncated": False}
                           for i in range(n)])
        store.append_cell({"cell": cell, "task": "sentiment", "strategy": label, "model": MODEL, "seed": 0,
                           "status": "ok", "error": None, "metric": "accuracy", "n": n, "prepare_s": 1.0,
                           "predict_s": 1.0, "peak_memory_mb": 100.0, "device": "cpu", "started_at": None,
                           "finished_at": None, "info": {}})
    store.write_json("manifest.json", {"name": "curve", "config": {"train_sizes": [16, 64, 256]}})


# lora trails rag at 16 and 64 and passes it only at the largest size.
CROSSING = {"rag(n=16)": 0.60, "rag(n=64)": 0.62, "rag(n=256)": 0.64,
            "lora(n=16)": 0.50, "lora(n=64)": 0.55, "lora(n=256)": 0.90, "prompting": 0.30}


def curve(root):
    summary = summarize(load_run(root))
    return learning_curve(summary[summary["task"] == "sentiment"], "accuracy")


def test_planted_crossover_is_named_with_its_interpolated_size(tmp_path):
    build(tmp_path / "run", CROSSING, n=200)
    found = curve(tmp_path / "run")
    # Differences -0.07 at 64 and +0.26 at 256: zero at 64 * 4 ** (0.07 / 0.33) = 86 on a log scale.
    assert found["sentences"][0] == ("lora overtakes rag at about 86 examples (interpolated on a log scale between "
                                     "64 and 256); at 256 examples their 95% intervals no longer overlap")
    # Both curves beat zero-shot prompting everywhere: no crossover against it.
    assert ("lora is ahead of prompting (no train data) at every size tried (16 to 256 examples): "
            "no crossover within the sizes tried; their 95% intervals are apart at 16, 64, 256 examples"
            ) in found["sentences"]
    assert found["sizes"] == [16, 64, 256] and [r["name"] for r in found["table"]][-1] == "prompting (no train data)"
    assert 'stroke-dasharray="2 3"' in str(found["chart"]) and "≈86" in str(found["chart"])


def test_overlapping_intervals_are_said_honestly(tmp_path):
    build(tmp_path / "run", CROSSING, n=10)  # ten examples: every interval is wide
    sentence = curve(tmp_path / "run")["sentences"][0]
    assert sentence.startswith("lora's point estimate passes rag's at about ")
    assert sentence.endswith("the intervals overlap at every size, so the crossover is not established")


@pytest.mark.parametrize("scores, n, sentence", [
    # rag ahead everywhere, apart at the smallest size.
    ({"rag(n=16)": 0.70, "rag(n=64)": 0.72, "rag(n=256)": 0.75,
      "lora(n=16)": 0.40, "lora(n=64)": 0.55, "lora(n=256)": 0.70}, 100,
     "rag is ahead of lora at every size tried (16 to 256 examples): no crossover within the sizes tried; "
     "their 95% intervals are apart at 16 examples"),
    # The real rotten-tomatoes curve of 2026-12-02: lora 0.66-0.72 vs rag 0.58, 64 examples.
    ({"rag(n=16)": 0.58, "rag(n=64)": 0.58, "rag(n=256)": 0.58,
      "lora(n=16)": 0.66, "lora(n=64)": 0.67, "lora(n=256)": 0.72}, 64,
     "lora is ahead of rag at every size tried (16 to 256 examples): no crossover within the sizes tried; "
     "the 95% intervals overlap at every size, so the lead is not established"),
])
def test_no_crossover_within_the_sizes_tried(tmp_path, scores, n, sentence):
    build(tmp_path / "run", scores, n=n)
    assert curve(tmp_path / "run")["sentences"] == [sentence]


def test_report_and_summary_carry_the_curve_and_plain_runs_do_not(tmp_path):
    build(tmp_path / "run", CROSSING, n=200)
    render_run(tmp_path / "run")
    html = (tmp_path / "run" / "report.html").read_text()
    md = (tmp_path / "run" / "summary.md").read_text()
    assert html.count("<h3>Learning curve") == 1 and "lora overtakes rag at about 86 examples" in html
    assert "- lora overtakes rag at about 86 examples" in md and "| lora | 0.500 [" in md
    build(tmp_path / "plain", {"rag": 0.6, "lora": 0.7}, n=20)
    render_run(tmp_path / "plain")
    assert "Learning curve" not in (tmp_path / "plain" / "report.html").read_text()
    assert "Learning curve" not in (tmp_path / "plain" / "summary.md").read_text()


@pytest.mark.parametrize("n, text", [(7, "7"), (86.2, "86"), (137, "140"), (1234, "1,200")])
def test_about(n, text):
    assert about(n) == text

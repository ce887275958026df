"""The embedder loader: the embedded MiniLM (offline, memoised, normalised vectors that
rank a relevant passage first), fingerprints, and clear errors for bad specs."""
import numpy as np
import pytest

from bench.embedder import folder_fingerprint, load_embedder
from bench.errors import BenchError


@pytest.fixture(scope="module")
def minilm():
    return load_embedder("minilm-l6-v2")  # a missing asset is a setup error, never a skip


@pytest.mark.slow
def test_minilm_loads_once_and_returns_normalised_float32(minilm):
    assert load_embedder() is minilm  # memoised per process
    assert (minilm.dim, minilm.max_tokens, minilm.name) == (384, 256, "minilm-l6-v2")
    assert minilm.fingerprint.startswith("asset:minilm-l6-v2:")
    vectors = minilm.encode(["one sentence", "another, longer sentence about retrieval"], batch_size=1)
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)
    assert len(minilm.tokenizer("hello world", add_special_tokens=False)["input_ids"]) == 2


@pytest.mark.slow
def test_minilm_ranks_the_relevant_passage_first(minilm):
    passages = ["The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
                "Mitochondria produce most of the chemical energy that powers a cell.",
                "The Amazon is the largest rainforest on Earth, spanning nine countries.",
                "Python is a programming language that emphasises readable code."]
    queries = ["When was the Eiffel Tower built?", "What organelle makes a cell's energy?",
               "Where is the biggest tropical forest?", "Which language is known for readability?"]
    scores = minilm.encode(queries) @ minilm.encode(passages).T
    assert list(scores.argmax(axis=1)) == [0, 1, 2, 3]
    assert all(scores[i, i] > np.delete(scores[i], i).max() + 0.1 for i in range(4))  # by a margin


def test_folder_fingerprint_follows_the_files(tmp_path):
    (tmp_path / "modules.json").write_text("[]")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    before = folder_fingerprint(tmp_path)
    (tmp_path / ".complete.json").write_text("{}")  # markers are not part of the model
    assert folder_fingerprint(tmp_path) == before
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert folder_fingerprint(tmp_path) != before


def test_bad_specs_are_clear_errors(tmp_path):
    with pytest.raises(BenchError, match="minilm-l6-v2"):  # a typo of the alias gets a suggestion
        load_embedder("minilm-l6")
    with pytest.raises(BenchError, match="sentence-transformers"):
        load_embedder(str(tmp_path))  # an empty folder is no model
    with pytest.raises(BenchError, match="not a sentence-transformers"):
        load_embedder(str(tmp_path / "missing"))

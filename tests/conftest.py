import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Run folders written by tests are signed with a throwaway key (inherited by the CLI
# subprocesses), never with the user's own key, which a test must not create.
os.environ.setdefault("ADAPTBENCH_KEY_FILE",
                      str(Path(tempfile.mkdtemp(prefix="adaptbench-test-key-")) / "integrity.key"))


@pytest.fixture(autouse=True)
def _private_work_cache(tmp_path_factory, monkeypatch):
    """Adapters and predictions cached by one test must never serve another test (or
    the user's runs); assets and converted models stay in the shared cache."""
    import bench.cache
    import bench.paths
    import bench.prepared

    root = tmp_path_factory.mktemp("work-cache")

    def cache_dir(*parts):
        if parts and parts[0] in ("prepared", "predictions"):
            path = root.joinpath(*parts)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return bench.paths.cache_dir(*parts)

    monkeypatch.setattr(bench.cache, "cache_dir", cache_dir)
    # Finished runs are recorded in the results database (bench/history.py): a private one per test.
    monkeypatch.setenv("ADAPTBENCH_HISTORY", str(root / "history.sqlite"))
    monkeypatch.setattr(bench.prepared, "cache_dir", cache_dir)


@pytest.fixture(scope="session")
def tiny():
    from fakes import tiny_handle

    return tiny_handle()


@pytest.fixture
def toy_task():
    from fakes import toy_classification

    return toy_classification()


@pytest.fixture
def toy_qa_task():
    from fakes import toy_qa

    return toy_qa()


@pytest.fixture
def fake_handle():
    from fakes import FakeHandle

    return FakeHandle()


@pytest.fixture
def hashing_embedder():
    from fakes import HashingEmbedder

    return HashingEmbedder()


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    import vllm_session

    items[:] = vllm_session.last(items)  # they wait for the server: start-up overlaps the rest
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# -- the test run's one vLLM server (tests/vllm_session.py) ---------------------------
def pytest_collection_finish(session):
    import vllm_session

    if not session.config.option.collectonly and vllm_session.wanted(session.items):
        vllm_session.SESSION.begin()


def pytest_sessionfinish(session, exitstatus):
    import vllm_session

    vllm_session.SESSION.stop()


@pytest.fixture(scope="session")
def vllm_lm():
    """The openai backend on the session's managed vLLM server (SmolLM2, float32, LoRA on)."""
    import vllm_session

    return vllm_session.SESSION.get()

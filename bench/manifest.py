"""What a run needs to be reproduced: config, versions, hardware, commit, hashes."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("adaptbench", "torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "gguf",
            "numpy", "pandas", "safetensors", "accelerate", "tokenizers")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    import psutil

    info: dict[str, Any] = {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
                            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                            "platform": platform.platform(), "python": sys.version.split()[0]}
    from bench.resources import pin_allocator

    info["malloc"] = pin_allocator()  # pinned by the first Worker; peaks depend on it
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def git_state(root: Path | None = None) -> dict[str, Any]:
    root = root or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def build_manifest(config: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from bench.assets import hashes
    from bench.redact import redact, redact_argv

    # Secrets in the config or on the command line (API keys, tokens) are masked here.
    config = redact(config)
    return {"adaptbench_manifest": 1,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": redact_argv(sys.argv), "config": config, "seeds": config.get("seeds"),
            "packages": package_versions(), "hardware": hardware(), "git": git_state(),
            "assets": hashes(), **(extra or {})}

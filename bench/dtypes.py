"""Which floating-point type the hf backend loads weights in (`--dtype`, config `dtype`).

`float32` and `bfloat16` are taken as asked. `auto`:
- on CUDA: bfloat16 (every GPU the bench targets has native bf16);
- on a CPU without native bf16 matrix instructions (no `amx_bf16` / `avx512_bf16` flag in
  /proc/cpuinfo, or PyTorch's oneDNN without bf16): float32, since emulated bf16 is slower
  and less accurate;
- on a CPU with them: bfloat16 only if `bench perf --only dtype` measured, for this model
  on this CPU, that bf16 agrees with fp32 on the same prompts (labels and greedy text) at
  least as often as `AGREEMENT` says; that check writes its verdict to the cache, and
  without it `auto` stays on float32 and says why.
The resolved dtype goes into the model's fingerprint (every cache key) and each cell's record.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHOICES = ("auto", "float32", "bfloat16")
# bf16 must pick the same label as fp32 on at least 95% of prompts and the same greedy
# text on at least 75% (greedy text diverges after one near-tie token; labels should not).
AGREEMENT = {"labels": 0.95, "text": 0.75}
NATIVE_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def native_bf16(flags: set[str] | None = None, onednn_bf16: bool | None = None) -> bool:
    """Whether this CPU multiplies bf16 natively and PyTorch's oneDNN uses it."""
    flags = cpu_flags() if flags is None else flags
    if onednn_bf16 is None:
        try:
            import torch

            onednn_bf16 = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            onednn_bf16 = False
    return onednn_bf16 and any(f in flags for f in NATIVE_FLAGS)


def passes(agreement: dict[str, float] | None) -> bool:
    return bool(agreement) and all(agreement.get(k, 0.0) >= v for k, v in AGREEMENT.items())


def resolve(requested: str, device: str, native: bool | None = None,
            agreement: dict[str, float] | None = None) -> tuple[str, str]:
    """(dtype name, why) for `requested` on `device`; `agreement` is the recorded check."""
    if requested not in CHOICES:
        from bench.errors import BenchError

        raise BenchError(f"dtype {requested!r}: use one of {', '.join(CHOICES)}")
    if requested != "auto":
        return requested, "asked for"
    if device.startswith("cuda"):
        return "bfloat16", "auto: CUDA"
    if not (native_bf16() if native is None else native):
        return "float32", "auto: this CPU has no native bf16 (amx_bf16/avx512_bf16 with oneDNN)"
    if agreement is None:
        return "float32", "auto: native bf16, but no agreement check recorded (run `bench perf --only dtype`)"
    if not passes(agreement):
        return "float32", f"auto: native bf16, but it agreed with fp32 only {_shown(agreement)}"
    return "bfloat16", f"auto: native bf16, agreement with fp32 {_shown(agreement)}"


def _shown(agreement: dict[str, float]) -> str:
    return ", ".join(f"{k} {agreement.get(k, 0):.0%} (need {v:.0%})" for k, v in AGREEMENT.items())


# -- the recorded check ------------------------------------------------------------
def _record_path(fingerprint: str) -> Path:
    import hashlib
    import platform

    import torch

    from bench.paths import cache_dir

    key = hashlib.sha256(f"{fingerprint}|{platform.processor()}|{cpu_model()}|{torch.__version__}".encode())
    return cache_dir("perf") / f"bf16-agreement-{key.hexdigest()[:16]}.json"


def cpu_model() -> str:
    for line in (Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
                 if Path("/proc/cpuinfo").exists() else []):
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return ""


def record_agreement(fingerprint: str, agreement: dict[str, float], facts: dict[str, Any]) -> Path:
    path = _record_path(fingerprint)
    path.write_text(json.dumps({"agreement": agreement, **facts}, indent=2), encoding="utf-8")
    return path


def recorded_agreement(fingerprint: str) -> dict[str, float] | None:
    path = _record_path(fingerprint)
    try:
        return json.loads(path.read_text(encoding="utf-8"))["agreement"]
    except (OSError, ValueError, KeyError):
        return None

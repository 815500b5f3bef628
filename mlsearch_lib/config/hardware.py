"""The one place that says which device a model runs on and whether bf16 is native there.

bf16 autocast is a win only where the hardware computes in bf16: a CUDA GPU that supports it, or
a CPU with AVX-512 BF16 or AMX. Elsewhere (an AVX2-only CPU, say) PyTorch emulates it: the
cross-encoder trained at 0.05x and scored at 0.13x fp32's rows/s (``reports/bench/encoder.md``),
so a profile asks for ``bf16: auto``.
"""

from __future__ import annotations

import os
import platform
from functools import cache

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@cache
def native_bf16(device_type: str | None = None) -> bool:
    """Whether ``device_type`` (default: :func:`default_device`'s) computes bf16 natively."""
    device_type = device_type or default_device().type
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def describe() -> str:
    """The device for a benchmark's header, e.g. ``2-core AMD EPYC CPU, bf16 emulated``."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
                     platform.processor() or platform.machine())
        name = f"{os.cpu_count()}-core {model} CPU"
    return f"{name}, bf16 {'native' if native_bf16() else 'emulated'}"


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f.readlines()
    except OSError:
        return []

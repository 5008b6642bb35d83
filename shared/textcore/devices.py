"""Where models run: device selection and mixed-precision (bf16) autocast.

The same code runs on CPU and CUDA. bf16 autocast is used on CUDA devices that support it and on CPUs with
AMX or AVX512-BF16 units (Sapphire Rapids and later), where it is several times faster than fp32 matmuls.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from textcore.errors import InvalidInput

DeviceName = str
Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")


def resolve_device(name: DeviceName = "auto") -> torch.device:
    """Turn `auto`, `cpu`, `cuda` or `cuda:N` into a torch device.

    Args:
        name: the requested device; `auto` picks CUDA when available, else CPU. In a process started by
            `torchrun`, `auto` and `cuda` mean `cuda:LOCAL_RANK`, so that each process gets its own GPU.

    Raises:
        InvalidInput: for an unknown name or a CUDA device that is not present.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise InvalidInput(
                f"LOCAL_RANK: expected one torchrun process per visible CUDA device (at most "
                f"{torch.cuda.device_count()}); found local rank {local_rank}"
            )
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidInput(f"expected a device such as auto, cpu or cuda:0; found {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInput(f"device {name!r} was requested but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise InvalidInput(f"expected a cpu or cuda device; found {name!r}")
    return device


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX-BF16 or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def bf16_supported(device: torch.device) -> bool:
    """True when bf16 autocast is fast and numerically supported on `device`."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return cpu_supports_bf16()


def use_bf16(precision: str, device: torch.device) -> bool:
    """Decide whether to autocast to bf16.

    Args:
        precision: `auto` (bf16 where the hardware has fast bf16 units), `bf16` (always; on a CPU without
            bf16 units it is emulated: correct but slow) or `fp32`.
        device: where the model runs.

    Raises:
        InvalidInput: for an unknown precision, or `bf16` on a CUDA device without bf16 support.
    """
    if precision not in PRECISIONS:
        raise InvalidInput(f"expected precision one of {', '.join(PRECISIONS)}; found {precision!r}")
    if precision == "fp32":
        return False
    supported = bf16_supported(device)
    if precision == "bf16":
        if device.type == "cuda" and not supported:
            raise InvalidInput(f"precision bf16 was requested but {device} has no bf16 support")
        return True
    return supported


# Attention kernels for bf16 on CUDA. cuDNN's is left out: it builds an execution plan for every new
# (batch, length) shape, and with dynamic padding nearly every batch has a new shape; on an H200 that held
# bf16 fine-tuning of MiniLM to less than half its fp32 speed (bench/results/finetune-cuda*.md). Flash and
# memory-efficient attention need no plans.
CUDA_BF16_ATTENTION = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)


def attention_kernels(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """While active, scaled-dot-product attention on `device` picks among `CUDA_BF16_ATTENTION` (on CUDA)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return sdpa_kernel(list(CUDA_BF16_ATTENTION))


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """bf16 autocast on `device` when `enabled` (on CUDA with the attention kernels above), else a no-op."""
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16), attention_kernels(device):
        yield

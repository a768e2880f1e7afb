"""Device, precision and thread settings from `spec.training`."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ftengine.errors import RunError, SpecError


def pick_device(name: str) -> torch.device:
    """`auto` -> the first CUDA device when there is one, else the CPU.

    Raises:
        RunError: a CUDA device was asked for and none is usable.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RunError(f"training.device: no CUDA device is available (got '{name}'); use device: auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RunError(f"training.device: there are {torch.cuda.device_count()} CUDA devices (got '{name}'); "
                           "use cuda:0 .. cuda:N-1")
    return device


def attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """Scaled-dot-product attention without cuDNN's backend while a run trains on CUDA (nothing changes on a CPU).

    Batches are padded to their own longest sequence (length-sorted buckets), so a run meets dozens of sequence
    lengths, and cuDNN's attention builds an execution plan for every new shape: ~5 ms of host time per call in the
    profile of the quickstart's top stage on an H100, which made its one epoch 4x slower (10.8 s against 2.7 s with
    flash and memory-efficient attention, which need no plan; bench/README.md, "GPU check"). The flags are set on
    entry and restored on exit, so a program that calls `run_spec` keeps its own choice outside the run.
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `training.precision` on `device` (None: plain fp32).

    `auto` is bf16 on CUDA devices that support it (fp16 on older ones) and fp32 on the CPU, where autocast
    brings no speed-up for these models.

    Raises:
        SpecError: fp16 on the CPU (no fp16 autocast support there).
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise SpecError(f"training.precision: fp16 autocast needs a CUDA device (got device {device}); "
                        "use precision: bf16 or fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` computes bf16 natively (fast), and why: GPUs from Ampere on (compute capability 8+);
    CPUs with AMX or AVX512-BF16 (elsewhere PyTorch emulates bf16 matmuls through fp32, slower than fp32)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return major >= 8, f"compute capability {major}.{minor}" + ("" if major >= 8 else " (bf16 needs 8.0+)")
    flags = cpu_flags()
    for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16")):
        if flag in flags:
            return True, f"{name} on this CPU"
    return False, "no AVX512-BF16 or AMX on this CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux `/proc/cpuinfo`; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def fill_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """`cache.fill_precision` on `device`: bf16 (autocast for the frozen prefix) or None (fp32).

    `auto` is bf16 only where the device computes bf16 natively (`native_bf16`).
    """
    if setting == "bf16" or (setting == "auto" and native_bf16(device)[0]):
        return torch.bfloat16
    return None


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> Any:
    """A GradScaler for fp16 (its small exponent range needs loss scaling); None otherwise."""
    if dtype is torch.float16:
        return torch.amp.GradScaler(device.type)
    return None


def set_threads(threads: int | None) -> None:
    """`training.threads` -> torch's intra-op thread count (None keeps torch's default)."""
    if threads:
        torch.set_num_threads(threads)


def fill_note(graph: Any, device: torch.device) -> str:
    """How the frozen prefix computes, for the run log: `fp32`, or `bf16 (the CPU has AVX512-BF16)`."""
    setting = graph.cache.fill_precision
    if fill_dtype(setting, device) is None:
        return "fp32 prefix" + (f" (auto: {native_bf16(device)[1]})" if setting == "auto" else "")
    native, why = native_bf16(device)
    return f"bf16 prefix ({why}" + ("" if native else "; slower than fp32 here") + ")"

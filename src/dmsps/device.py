"""Where and how tensors are computed: device and mixed-precision choice, host-to-device
copies, and CPU process settings. Shared by training and inference, so that inference never
imports the training loop.

glibc malloc tuning, measured in benchmarks/speed.py: at 256x256 batch 24, keeping freed
memory in the heap made a CPU training step 1.47x faster (no effect at 128x128, whose
tensors stay under glibc's 32 MiB mmap threshold).
"""

from __future__ import annotations

import ctypes
import sys

import torch

from dmsps.errors import DmspsError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit CUDA device without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DmspsError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DmspsError(f"device '{name}' requested but CUDA is not available")
    return dev


AMP_CHOICES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_name(amp: torch.dtype | None) -> str:
    """``resolve_amp``'s answer as a name for logs and reports: fp32, bf16 or fp16."""
    return next((k for k, v in AMP_CHOICES.items() if v == amp and v is not None), "fp32")


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX, x86 only).

    There, bf16 autocast made a CPU training step 1.5-1.9x faster (docs/speed.md); on
    CPUs without it PyTorch emulates bf16 and the step gets slower.
    """
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # a build without the probe's backend
            continue
    return False


def resolve_amp(name: str, device: torch.device, training: bool = False) -> torch.dtype | None:
    """``auto``: bf16 autocast on CUDA; on the CPU, bf16 for training where the CPU computes
    it natively (same Dice as fp32 in docs/results.md section 9, 1.5-1.9x faster steps),
    else full precision. CPU inference stays fp32 under ``auto``: it is cheap beside
    training, and predictions stay comparable with those of earlier versions."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        return torch.bfloat16 if training and native_cpu_bf16() else None
    if name not in AMP_CHOICES:
        raise DmspsError(f"amp must be auto, none, bf16 or fp16, not '{name}'")
    return AMP_CHOICES[name]


def host_to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small CPU tensor to ``device`` without making the host wait.

    A plain ``.to("cuda")`` from pageable memory synchronises the stream, i.e. waits for
    the GPU to finish the previous step; the training step does two such copies (sample
    indices, augmentation matrices). Pinned memory makes the copy asynchronous.
    """
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def tune_glibc_malloc() -> bool:
    """Keep freed heap memory for reuse instead of handing it back to the kernel (glibc).

    By default glibc serves every allocation above 32 MiB with its own mmap and unmaps it
    on free; a CPU training step allocates and frees gigabytes of activations, so every
    step page-faults and zero-fills them again (at 256x256 batch 24: ~1.8 M faults and
    5-10 s of kernel time per step). With mmap off (M_MMAP_MAX = 0) and trimming off
    (M_TRIM_THRESHOLD = -1, see mallopt(3)) the heap is reused from the second step on.
    The price: the process keeps its peak heap until it exits. Returns False where it
    does not apply (not glibc).
    """
    libc = _libc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, -1))


def release_heap() -> None:
    """Give free heap memory back to the kernel (glibc malloc_trim); a no-op elsewhere."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)

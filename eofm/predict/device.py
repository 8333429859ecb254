"""Which device and precision ``eofm predict`` runs on, decided before any output exists.

``--device auto`` is CUDA when a CUDA GPU is present, else CPU; ``cuda`` means the local
GPU of this process (``LOCAL_RANK`` under torchrun, ``SLURM_LOCALID`` under SLURM, so
that each rank of a sharded run takes its own). ``--precision auto`` is bf16 on GPUs that
support it (autocast; Micikevicius et al., "Mixed Precision Training", ICLR 2018) and
fp32 elsewhere. A request the machine cannot honour is an argument error (exit 2) that
names the device; asking for CUDA on a machine without an NVIDIA driver is refused
without importing torch.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from eofm.errors import EofmError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_CUDA = re.compile(r"^cuda(:(\d+))?$")


def _bad(message: str) -> EofmError:
    return EofmError(message, exit_code=2)


def check_device_spec(spec: str) -> None:
    """Syntax and obvious impossibilities of ``--device``, without importing torch."""
    if spec in ("auto", "cpu"):
        return
    if spec == "mps":
        if sys.platform != "darwin":
            raise _bad("--device mps needs Apple silicon (macOS); this machine has no MPS device.")
        return
    if not _CUDA.match(spec):
        raise _bad(f"--device must be auto, cpu, cuda, cuda:N or mps, got {spec!r}.")
    if not nvidia_driver_present():
        raise _bad(f"--device {spec}: this machine has no CUDA GPU (no NVIDIA driver found).")


def check_precision_spec(spec: str) -> None:
    if spec not in PRECISIONS:
        raise _bad(f"--precision must be one of {list(PRECISIONS)}, got {spec!r}.")


def check_workers_spec(spec: int | str) -> None:
    """``--workers``: ``auto`` or a whole number >= 1."""
    if str(spec) == "auto":
        return
    try:
        ok = int(spec) >= 1 and str(int(spec)) == str(spec).strip()
    except ValueError:
        ok = False
    if not ok:
        raise _bad(f"--workers must be auto or a whole number >= 1, got {spec!r}.")


def resolve_workers(spec: int | str = "auto") -> int:
    """Reading threads: given, or ``auto`` = 1 on up to 4 cores (the model, blending and
    writing need the rest), then a quarter of the cores, at most 8."""
    check_workers_spec(spec)
    if str(spec) != "auto":
        return int(spec)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, (cores or 1) // 4))


def nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def local_rank() -> int:
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def resolve_device(spec: str = "auto") -> Any:
    """The ``torch.device`` for ``--device``."""
    import torch

    check_device_spec(spec)
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise _bad("--device mps: MPS is not available in this PyTorch build or machine.")
        return torch.device("mps")
    if spec == "auto":
        if not (nvidia_driver_present() and torch.cuda.is_available()):
            return torch.device("cpu")
        spec = "cuda"
    if not torch.cuda.is_available():
        raise _bad(f"--device {spec}: CUDA is not available to this PyTorch build.")
    count = torch.cuda.device_count()
    match = _CUDA.match(spec)
    index = int(match.group(2)) if match and match.group(2) else local_rank() % count
    if index >= count:
        raise _bad(f"--device {spec}: this machine has {count} CUDA device(s) (0..{count - 1}).")
    return torch.device("cuda", index)


def resolve_precision(spec: str, device: Any) -> str:
    """``bf16``, ``fp16`` or ``fp32`` for ``--precision`` on ``device``."""
    import torch

    check_precision_spec(spec)
    if spec == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if spec == "fp16" and device.type == "cpu":
        raise _bad("--precision fp16 is not supported on the CPU; use fp32 or bf16.")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise _bad(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support it.")
    return spec


def autocast_context(device: Any, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for reduced precision; nothing at all for fp32 (results stay bitwise)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)

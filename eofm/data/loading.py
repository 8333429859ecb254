"""DataLoader settings that keep an accelerator fed: worker count, pinned memory, prefetch.

``data.num_workers: auto`` takes about one worker per core but one (the trainer's), at
most :data:`MAX_AUTO_WORKERS`; on a machine of two cores or fewer it stays 0, since a
worker process would only take the core the training step needs. Workers persist across
epochs and prefetch :data:`PREFETCH` batches each; batches go to pinned memory when a
CUDA GPU trains, so that host-to-device copies overlap the step.
"""

from __future__ import annotations

import os
from typing import Any

MAX_AUTO_WORKERS = 8
PREFETCH = 4


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(value: int | str) -> int:
    """``data.num_workers`` as a number (``auto`` resolved for this machine)."""
    if value != "auto":
        return int(value)
    cores = available_cores()
    return 0 if cores <= 2 else min(cores - 1, MAX_AUTO_WORKERS)


def loader_options(num_workers: int, *, pin_memory: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``torch.utils.data.DataLoader``."""
    options: dict[str, Any] = {
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": pin_memory,
    }
    if num_workers > 0:
        options["prefetch_factor"] = PREFETCH
    return options


def pin_memory_for(accelerator: str) -> bool:
    """Pinned host memory pays off only when a CUDA GPU trains."""
    if accelerator == "cpu":
        return False
    import torch

    return torch.cuda.is_available()

"""The order in which a loader visits its samples, a function of the seed and the epoch.

A ``DataLoader(shuffle=True, generator=g)`` draws each epoch's permutation from ``g``'s
state, which only the uninterrupted process holds: a run resumed from a checkpoint
would shuffle its next epoch as the first one was shuffled. :class:`EpochShuffle`
draws epoch ``e``'s permutation from ``seed + e`` alone, as torch's
``DistributedSampler`` does (``torch/utils/data/distributed.py``); Lightning calls its
``set_epoch`` before each training epoch (``loops/fit_loop.py``), so a resumed run
visits its remaining epochs' samples in the uninterrupted run's order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    """A permutation of ``range(size)`` per epoch, seeded by ``seed + epoch``."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def order_options(size: int, seed: int, *, shuffle: bool) -> dict[str, Any]:
    """``DataLoader`` keywords for a split's order: shuffled by epoch for training, in
    file order otherwise; ``generator`` seeds the worker processes' base seed."""
    options: dict[str, Any] = {"generator": torch.Generator().manual_seed(seed)}
    if shuffle:
        options["sampler"] = EpochShuffle(size, seed)
    return options

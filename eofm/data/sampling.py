"""The order in which a loader visits its samples, a function of the seed and the epoch,
and the share of them each process of a distributed run visits.

A ``DataLoader(shuffle=True, generator=g)`` draws each epoch's permutation from ``g``'s
state, which only the uninterrupted process holds: a run resumed from a checkpoint
would shuffle its next epoch as the first one was shuffled. :class:`EpochShuffle`
draws epoch ``e``'s permutation from ``seed + e`` alone, as torch's
``DistributedSampler`` does (``torch/utils/data/distributed.py``); Lightning calls its
``set_epoch`` before each training epoch (``loops/fit_loop.py``), so a resumed run
visits its remaining epochs' samples in the uninterrupted run's order.

Under DDP every process draws the same permutation and keeps every ``world``-th index
from its rank on, padded to equal length by repeating the permutation's first indices,
as ``DistributedSampler`` does: each sample is visited once per epoch across the ranks
(when the ranks divide the split; else the few padding samples twice), and every rank
takes the same number of steps, which DDP's gradient all-reduce needs. Evaluation
splits are shared out without padding (:class:`InOrderShard`, as Lightning's
``UnrepeatedDistributedSampler``): the metrics, summed over the ranks by torchmetrics,
count each sample once and equal a single process's.

Both samplers are ``DistributedSampler`` subclasses only so that Lightning keeps them:
it replaces any other sampler of a distributed run by its own
(``_DataConnector._requires_distributed_sampler``), which would pad the evaluation
splits. The rank and the world size are read from ``torch.distributed`` when the
loader is iterated, since the loaders are made before the process group exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from eofm.errors import EofmError


def process_share() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a distributed run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _ShardSampler(DistributedSampler):
    """``range(size)`` shared out between the processes of the current process group."""

    def __init__(self, size: int, seed: int) -> None:  # no super().__init__: see module doc
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        raise NotImplementedError

    def _share(self) -> list[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        return iter(self._share())

    def __len__(self) -> int:
        return len(self._share())


class EpochShuffle(_ShardSampler):
    """A permutation of ``range(size)`` per epoch, seeded by ``seed + epoch``; under DDP
    this rank's strided share of it, padded to ``ceil(size / world)``."""

    def order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def _share(self) -> list[int]:
        rank, world = process_share()
        order = self.order()
        if world == 1:
            return order
        total = -(-self.size // world) * world
        padded = (order * (-(-total // max(1, self.size))))[:total]
        return padded[rank:total:world]


class InOrderShard(_ShardSampler):
    """``range(size)`` in order; under DDP this rank's strided share, unpadded (every
    rank needs at least one sample, so that each computes and syncs its metrics)."""

    def order(self) -> list[int]:
        return list(range(self.size))

    def _share(self) -> list[int]:
        rank, world = process_share()
        if 0 < self.size < world:
            raise EofmError(
                f"An evaluation split has {self.size} sample(s), fewer than the {world} "
                "processes of this run: run it on fewer devices."
            )
        return self.order()[rank::world]


def order_options(size: int, seed: int, *, shuffle: bool) -> dict[str, Any]:
    """``DataLoader`` keywords for a split's order: shuffled by epoch for training, in
    file order otherwise (each shared out between the processes of a DDP run);
    ``generator`` seeds the worker processes' base seed."""
    options: dict[str, Any] = {"generator": torch.Generator().manual_seed(seed)}
    options["sampler"] = EpochShuffle(size, seed) if shuffle else InOrderShard(size, seed)
    return options

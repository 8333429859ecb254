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
``UnrepeatedDistributedSampler``), and by whole batches: each rank scores the batches a
single process would, so the metrics, summed over the ranks by torchmetrics, count each
sample once, and the losses (a batch's mean over its pixels) are a single process's.

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

    def __init__(self, size: int, seed: int, batch_size: int = 1) -> None:  # see module doc
        self.size, self.seed, self.epoch = size, seed, 0
        self.batch_size = max(1, batch_size)

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
    """``range(size)`` in order; under DDP this rank's share of its batches (batch ``b``
    to rank ``b % world``), unpadded. Every rank needs a batch, so that each computes and
    syncs its metrics."""

    def order(self) -> list[int]:
        return list(range(self.size))

    def _share(self) -> list[int]:
        rank, world = process_share()
        order = self.order()
        if world == 1:
            return order
        batches = [order[i : i + self.batch_size] for i in range(0, self.size, self.batch_size)]
        if 0 < len(batches) < world:
            raise EofmError(
                f"An evaluation split has {self.size} sample(s), {len(batches)} batch(es) of "
                f"{self.batch_size}, fewer than the {world} processes of this run: run it on "
                "fewer devices, or with a smaller data.batch_size."
            )
        return [index for batch in batches[rank::world] for index in batch]


def order_options(size: int, seed: int, *, shuffle: bool, batch_size: int = 1) -> dict[str, Any]:
    """``DataLoader`` keywords for a split's order: shuffled by epoch for training, in
    file order otherwise (each shared out between the processes of a DDP run, evaluation
    by whole batches of ``batch_size``); ``generator`` seeds the worker processes' base
    seed."""
    options: dict[str, Any] = {"generator": torch.Generator().manual_seed(seed)}
    if shuffle:
        options["sampler"] = EpochShuffle(size, seed)
    else:
        options["sampler"] = InOrderShard(size, seed, batch_size)
    return options

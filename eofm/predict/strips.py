"""Strips of tiles: reusable read buffers, and batches of tiles cut from them without a copy.

A strip is one read of ``tile`` rows across a column band. The tiles of a batch are
views into it when their columns are evenly spaced (every batch but the one holding the
edge-flush last column), so the host never copies tile pixels: a model on the CPU reads
the strided view directly (every backbone we build starts with a convolution, which reads
it exactly as it reads a copy: ``tests/test_strips.py``); for an accelerator the batch is
copied into pinned memory for a non-blocking upload. Buffers go back to a pool
once the model is done with every batch of their strip, so memory is bounded by the
strips in flight, never by the scene.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class Recycler(Generic[T]):
    """Buffers handed back by any thread and reused by the next taker; a new one is made
    when none is free (never waited for: how many exist is bounded by the stages' queues).
    A run of same-sized scenes, or column bands, then reads into buffers already made."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make, self._free, self._lock = make, [], threading.Lock()

    def take(self) -> T:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._make()

    def give_back(self, buffer: T) -> None:
        with self._lock:
            self._free.append(buffer)


@dataclass
class StripBuffer:
    """One strip's data ``(C, tile, W)`` and validity ``(tile, W)``, and which of its
    columns hold a valid pixel."""

    data: np.ndarray
    mask: np.ndarray
    pool: Recycler | None = None
    valid_columns: np.ndarray | None = None  # running count of columns with a valid pixel

    def count_valid_columns(self) -> None:
        """Index the columns holding a valid pixel (after each read), so that a tile's
        validity is two lookups."""
        counts = np.zeros(self.mask.shape[1] + 1, np.int64)
        np.cumsum(self.mask.any(axis=0), out=counts[1:])
        self.valid_columns = counts

    def release(self) -> None:
        """Back to the pool: the model has every batch of this strip."""
        if self.pool is not None:
            self.pool.give_back(self)


def strip_pool(shape: tuple[int, int, int]) -> Recycler[StripBuffer]:
    """Reused strip buffers of ``shape`` ``(C, tile, W)``."""
    pool: Recycler[StripBuffer] = Recycler(
        lambda: StripBuffer(np.zeros(shape, np.float32), np.zeros(shape[1:], bool), pool)
    )
    return pool


def _even(offsets: list[int]) -> int | None:
    """The spacing of ``offsets`` when it is constant (0 for one tile), else None."""
    if len(offsets) == 1:
        return 0
    step = offsets[1] - offsets[0]
    return step if all(b - a == step for a, b in itertools.pairwise(offsets)) else None


@dataclass
class TileBatch:
    """The tiles of ``strip`` at column ``offsets`` (within the strip), ``tile`` px each."""

    strip: StripBuffer
    offsets: list[int]
    tile: int

    def __len__(self) -> int:
        return len(self.offsets)

    def subset(self, keep: np.ndarray) -> TileBatch:
        return TileBatch(self.strip, [self.offsets[i] for i in keep], self.tile)

    def host(self) -> np.ndarray:
        """``(B, C, tile, tile)`` on the host: a view of the strip where the offsets are
        evenly spaced, else a stacked copy."""
        data, t, offsets = self.strip.data, self.tile, self.offsets
        step = _even(offsets)
        if step is None:
            return self.stacked()
        start = data[:, :, offsets[0] : offsets[0] + t]
        shape = (len(offsets), *start.shape)
        strides = (step * data.strides[-1], *start.strides)
        return np.lib.stride_tricks.as_strided(start, shape, strides)

    def pinned(self) -> np.ndarray:
        """A contiguous copy in pinned host memory, for a non-blocking upload."""
        import torch  # only the PyTorch stage on CUDA asks for it

        t = self.tile
        shape = (len(self), self.strip.data.shape[0], t, t)
        return self.stacked(out=torch.empty(shape, pin_memory=True).numpy())

    def stacked(self, out: np.ndarray | None = None) -> np.ndarray:
        """A contiguous ``(B, C, tile, tile)`` copy of the tiles (into ``out`` when given)."""
        t = self.tile
        return np.stack([self.strip.data[:, :, o : o + t] for o in self.offsets], out=out)

    def any_valid(self) -> np.ndarray:
        """Indices of the tiles holding at least one valid pixel."""
        counts, starts = self.strip.valid_columns, np.asarray(self.offsets)
        return np.flatnonzero(counts[starts + self.tile] > counts[starts])

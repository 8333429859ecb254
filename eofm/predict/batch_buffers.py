"""Reused host buffers for the model stage on the CPU: each batch's weighted probabilities.

Allocating these per batch (6.4 MB for 16 tiles of 224 px and 2 classes) costs more than
the copy: glibc hands large blocks back to the kernel and maps them again, so each batch
touched fresh pages. Measured on this project's 2-core VM, 116 batches of softmax outputs
faulted in 492 MB in a process's first scene (0.59 s against 0.33 s once warm). A few
buffers, handed back by the blending thread once it has added a batch, bound that by the
batches in flight. (The edge batch's stacked tiles, read before the next batch is made,
need only one buffer: ``Predictor._host_tiles``.)
"""

from __future__ import annotations

import threading

import torch


class BatchBuffers:
    """Float32 tensors of one shape ``(batch, channels, tile, tile)``, made on first need
    (or ahead of it, ``make_ahead``) and reused once given back (from any thread)."""

    def __init__(self, batch: int, channels: int, tile: int) -> None:
        self.shape = (batch, channels, tile, tile)
        self._free: list[torch.Tensor] = []
        self._made = 0
        self._coming = 0  # being made ahead: ``take`` waits for these
        self._changed = threading.Condition()

    def take(self) -> torch.Tensor:
        """A free buffer (stale contents): one given back or made ahead, else a new one
        (once none is on its way)."""
        with self._changed:
            while not self._free:
                if not self._coming:
                    self._made += 1
                    break
                self._changed.wait()
            else:
                return self._free.pop()
        return torch.empty(self.shape, dtype=torch.float32)

    def make_ahead(self, total: int) -> None:
        """Make buffers, in the calling thread and with every page touched, until
        ``total`` exist (the model stage then takes them without faulting them in)."""
        with self._changed:
            count = max(0, total - self._made)
            self._made += count
            self._coming += count
        made = 0
        try:
            while made < count:
                buffer = torch.zeros(self.shape, dtype=torch.float32)
                with self._changed:
                    self._free.append(buffer)
                    self._coming -= 1
                    made += 1
                    self._changed.notify_all()
        finally:  # (out of memory) the model stage must not wait for what will not come
            self._give_up(count - made)

    def _give_up(self, missing: int) -> None:
        """Buffers reserved by ``make_ahead`` that were not made."""
        if missing > 0:
            with self._changed:
                self._coming -= missing
                self._made -= missing
                self._changed.notify_all()

    def give_back(self, buffer: torch.Tensor) -> None:
        with self._changed:
            self._free.append(buffer)
            self._changed.notify()

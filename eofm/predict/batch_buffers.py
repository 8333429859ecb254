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

import torch

from eofm.predict.buffer_pool import BufferPool


class BatchBuffers(BufferPool[torch.Tensor]):
    """Float32 tensors of one shape ``(batch, channels, tile, tile)``, made on first need
    (or ahead of it, ``make_ahead``) and reused once given back (from any thread)."""

    def __init__(self, batch: int, channels: int, tile: int) -> None:
        self.shape = (batch, channels, tile, tile)
        super().__init__(
            lambda: torch.empty(self.shape, dtype=torch.float32),
            lambda: torch.zeros(self.shape, dtype=torch.float32),  # pages written
        )

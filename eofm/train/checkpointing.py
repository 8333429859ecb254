"""Checkpoints that lose nothing: atomic writes, ``last.ckpt`` after every epoch, and the
random state that makes a resumed run continue as an uninterrupted one would.

Lightning's ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` only in a step in
which a top-k checkpoint was saved: an epoch whose monitored metric did not improve left
``last.ckpt`` at an earlier epoch, and a run killed later resumed from there, losing the
finished epochs. ``last.ckpt`` therefore has its own callback, with no monitor, that
saves after every epoch (Lightning, ``callbacks/model_checkpoint.py``: a ``monitor=None``
checkpoint saves each time it is due).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from eofm.atomic import atomic_path

LAST = "last"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temporary file next to the target, then rename it into place."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        with atomic_path(Path(path)) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def checkpoint_callbacks(folder: Path, monitor: str, mode: str) -> list[ModelCheckpoint]:
    """``best.ckpt`` (the monitored metric's best epoch) and ``last.ckpt`` (every epoch).

    The order matters: Lightning calls them in this order, so ``last.ckpt`` holds the
    best-checkpoint state of the same epoch.
    """
    best = ModelCheckpoint(
        dirpath=folder,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_last=False,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(
        dirpath=folder,
        filename=LAST,
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        enable_version_counter=False,
    )
    return [best, last]


class RandomState(Callback):
    """Carries Python's, NumPy's and torch's random states in each checkpoint.

    ``seed_everything`` seeds a run once, at its start; a resumed run would otherwise draw
    its shuffles, crops and dropout masks from the seed again rather than from where the
    interrupted run stood. The states saved with a checkpoint are put back when training
    restarts (``on_train_start``, after the sanity check and before the first epoch's
    loader draws), so the resumed epochs see the same crops, flips and dropout masks.
    """

    def __init__(self) -> None:
        self._restored: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Plain types and tensors only, so that ``torch.load(weights_only=True)`` reads it."""
        kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": [
                kind,
                torch.from_numpy(keys.astype(np.int64)),
                position,
                has_gauss,
                cached_gauss,
            ],
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self._restored is None:
            return
        state, self._restored = self._restored, None
        random.setstate(state["python"])
        kind, keys, position, has_gauss, cached_gauss = state["numpy"]
        np.random.set_state(
            (kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss)
        )
        torch.set_rng_state(state["torch"])

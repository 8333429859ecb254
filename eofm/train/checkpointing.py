"""Atomic checkpoint writes: a killed ``fit`` never leaves a half-written ``last.ckpt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from eofm.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temporary file next to the target, then rename it into place."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        with atomic_path(Path(path)) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)

"""A trained weather run applied to ERA5-layout data: its decoded variables, or its latent,
at chosen time steps, in bounded memory (a batch of steps at a time).

For a 'now' step ``i`` the run sees the ``history_steps`` states up to ``i`` and predicts
its variables at ``i + lead`` (its target time), exactly as in training: the same
variables, levels and statics (:class:`eofm.data.era5.AuroraBatches`), and its target
statistics to return physical units.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from eofm.data.era5 import AuroraBatches, ERA5Dataset, ERA5Source
from eofm.errors import EofmError


class WeatherRun:
    """A trained latent-regression model (backbone ► latent ► per-variable decoders) over
    one ERA5 source."""

    def __init__(self, trained: Any, source: ERA5Source, *, batch_size: int = 1) -> None:
        self.trained, self.source, self.batch_size = trained, source, batch_size
        self.names = list(trained.bands)  # the decoded variables
        self.batches = AuroraBatches(source)
        self.dataset = ERA5Dataset(source, [], trained.mean, trained.std, None, with_targets=False)
        self.mean = np.asarray(trained.mean, np.float32)[:, None, None]
        self.std = np.asarray(trained.std, np.float32)[:, None, None]
        self.patch = source.spec.patch_size

    @property
    def latent_dim(self) -> int:
        """Channels of the latent's surface level (what :meth:`latents` returns)."""
        return int(self.trained.model.backbone.latent_dim)

    def usable_steps(self) -> list[int]:
        """'Now' steps with their whole history and their target time in the record."""
        first = (self.source.spec.history_steps - 1) * self.dataset.step
        return list(range(first, len(self.source.times) - self.dataset.lead))

    def target_time(self, now: int) -> np.datetime64:
        return self.source.times[now + self.dataset.lead]

    def grid(self, latent: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(lat, lon)`` of the outputs' cells, or of the latent's patches (their centres)."""
        lat, lon = self.batches.lat.numpy(), self.batches.lon.numpy()
        if not latent:
            return lat, lon
        p = self.patch
        return lat.reshape(-1, p).mean(axis=1), lon.reshape(-1, p).mean(axis=1)

    def _encoded(self, now: Sequence[int]) -> Iterator[tuple[list[int], torch.Tensor]]:
        self.batches.check_finite(sorted({t for i in now for t in self.dataset.history(i)}))
        model = self.trained.model.eval()
        for start in range(0, len(now), self.batch_size):
            chunk = list(now[start : start + self.batch_size])
            self.dataset.now = chunk
            batch = self.batches.collate([self.dataset[k] for k in range(len(chunk))])
            with torch.inference_mode():
                yield chunk, model.encode(batch)

    def outputs(self, now: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """``(now, (V, H, W) float32)`` in physical units, for each step of ``now``."""
        model = self.trained.model
        for chunk, latent in self._encoded(now):
            with torch.inference_mode():
                decoded = model.decode(latent).float().numpy()
            for i, fields in zip(chunk, decoded, strict=True):
                yield i, fields * self.std + self.mean

    def latents(self, now: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """``(now, (D, H/p, W/p) float32)``: the latent's surface level, channels first."""
        for chunk, latent in self._encoded(now):
            if latent.dim() != 5:
                raise EofmError(
                    f"The weather run {self.trained.source} has a latent of shape "
                    f"{tuple(latent.shape)}; the surface level of a (B, levels, H, W, D) latent "
                    "is needed."
                )
            surface = latent[:, 0].float().permute(0, 3, 1, 2).numpy()
            yield from zip(chunk, surface, strict=True)

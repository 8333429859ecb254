"""Multi-date inputs: a frame-major stack ``(B, T*C, H, W)`` taken apart into its frames.

- ``native``: the backbone takes the frames itself. Prithvi-EO embeds ``(B, C, T, H, W)``
  in 3D patches with a 3D sin-cos position table and, for TL models, one temporal
  coordinate per frame (Szwarcman et al., "Prithvi-EO-2.0", arXiv:2412.02732; the
  multi-temporal crop fine-tuning of Jakubik et al., arXiv:2310.18660, Sec. 4.3, with
  ``num_frames: 3`` and the frames' tokens folded into the neck's channels).
- ``mean``, ``max``, ``concat``, ``attention``: a backbone that takes one frame encodes
  each frame alone (with that frame's date, for TL models), and the frames' features are
  pooled level by level: averaged, the maximum, stacked into channels (as the native
  neck folds frames), or weighted by a learned per-position softmax over time, the
  single-query temporal attention of L-TAE (Garnot and Landrieu, "Lightweight Temporal
  Self-Attention for Classifying Satellite Images Time Series", AALT 2020) reduced to
  one head over the backbone's features.

ViT backbones give tokens ``(B, 1 + N, D)`` per tapped layer and their patch grid; CNN
backbones feature maps ``(B, C, h, w)`` and no grid. Both are pooled the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

POOLING = ("mean", "max", "concat", "attention")


class FrameEncoder(nn.Module):
    """Encodes a stack of ``frames`` frames with ``backbone`` (passed at call time, so that
    it stays the model's own, under any adapter). ``channels``: the width of each feature
    level one frame gives (the temporal attention's scorers)."""

    def __init__(self, frames: int, mode: str, channels: Sequence[int], *, maps: bool) -> None:
        super().__init__()
        if mode not in ("native", *POOLING):
            raise ValueError(f"unknown temporal mode {mode!r}")
        self.frames, self.mode = frames, mode
        if mode == "attention":  # one score per frame and position, softmax over the frames
            self.scorers = nn.ModuleList(
                [nn.Conv2d(c, 1, 1) if maps else nn.Linear(c, 1) for c in channels]
            )
            # which frame it is (L-TAE's positional encoding, as one learned score per frame)
            self.frame_bias = nn.Parameter(torch.zeros(frames))

    def dates(self, coords: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """``(B, T, 2)`` dates; one date for a stack of several frames is no date per
        frame (NaN: the encoder adds no temporal embedding)."""
        if coords is None or coords.shape[1] == self.frames:
            return coords
        return torch.full((batch, self.frames, 2), torch.nan, device=coords.device)

    def forward(
        self,
        backbone: nn.Module,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
        **extra: Any,
    ) -> tuple[list[torch.Tensor], tuple[int, int, int] | None]:
        b, stacked, h, w = x.shape
        frames = x.reshape(b, self.frames, stacked // self.frames, h, w)
        dates = self.dates(temporal_coords, b)
        if self.mode == "native":  # (B, C, T, H, W)
            return backbone(frames.transpose(1, 2), dates, location_coords, **extra)
        outs = [
            backbone(
                frames[:, t],
                None if dates is None else dates[:, t : t + 1],
                location_coords,
                **extra,
            )
            for t in range(self.frames)
        ]
        grid = outs[0][1]
        levels = [
            torch.stack(level, dim=1) for level in zip(*(list(o[0]) for o in outs), strict=True)
        ]
        pooled = [self.pool(i, level, grid) for i, level in enumerate(levels)]
        if grid is not None and self.mode == "concat":
            grid = (grid[0] * self.frames, grid[1], grid[2])
        return pooled, grid

    def pool(
        self, index: int, level: torch.Tensor, grid: tuple[int, int, int] | None
    ) -> torch.Tensor:
        """``(B, T, ...)`` features of one level -> one frame's shape (``concat``: tokens of
        every frame after one class token, t-major like Prithvi's; maps stacked in channels)."""
        if self.mode == "mean":
            return level.mean(dim=1)
        if self.mode == "max":
            return level.amax(dim=1)
        if self.mode == "concat":
            if grid is None:
                return level.flatten(1, 2)
            return torch.cat([level[:, 0, :1], level[:, :, 1:].flatten(1, 2)], dim=1)
        scorer = self.scorers[index]
        if grid is None:  # maps (B, T, C, h, w)
            scores = torch.stack([scorer(level[:, t]) for t in range(level.shape[1])], dim=1)
            bias = self.frame_bias.view(1, -1, 1, 1, 1)
        else:  # tokens (B, T, N, D)
            scores = scorer(level)
            bias = self.frame_bias.view(1, -1, 1, 1)
        scores = scores + bias
        return (scores.softmax(dim=1) * level).sum(dim=1)

"""A super-resolution head: residual convolutions on a coarse grid, then sub-pixel
convolution up to the fine grid (Shi et al., "Real-Time Single Image and Video
Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016).

Input ``(B, C, h, w)`` (coarse fields, or a backbone's latent as channels); output
``(B, V, h f, w f)``, one channel per target variable.
"""

from __future__ import annotations

import torch
from torch import nn


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PixelShuffleDecoder(nn.Module):
    """Conv stem, ``blocks`` residual blocks, ``f``-fold pixel shuffle to ``outputs``."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        outputs: int,
        factor: int,
        *,
        blocks: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.factor, self.outputs = factor, outputs
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[_Residual(channels) for _ in range(blocks)])
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.to_subpixels = nn.Conv2d(channels, outputs * factor * factor, 3, padding=1)
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.blocks(torch.nn.functional.gelu(self.stem(x))))
        return self.shuffle(self.to_subpixels(x))

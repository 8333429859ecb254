"""Necks: ViT tokens of the tapped layers -> feature maps a convolutional decoder can use."""

from __future__ import annotations

import torch
from torch import nn


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """``(B, P + T*H*W, D)`` -> ``(B, T*D, H, W)``: drop the ``P`` leading tokens (a cls
    token; TerraMind has none), fold time into channels."""
    t, h, w = grid
    b, n, d = tokens.shape
    x = tokens[:, n - t * h * w :].reshape(b, t, h, w, d)
    return x.permute(0, 1, 4, 2, 3).reshape(b, t * d, h, w)


def _up2(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2), nn.BatchNorm2d(out_ch), nn.GELU()
    )


class ViTNeck(nn.Module):
    """Tokens -> maps at the patch grid, optionally as a 4-level pyramid.

    The pyramid (strides 4, 8, 16, 32 for 16 px patches) is the simple feature pyramid
    of ViTDet (Li et al., "Exploring Plain Vision Transformer Backbones for Object
    Detection", ECCV 2022): transposed convolutions up, max-pooling down.
    """

    def __init__(self, in_channels: int, num_maps: int, *, pyramid: bool) -> None:
        super().__init__()
        self.pyramid = pyramid
        if pyramid:
            if num_maps != 4:
                raise ValueError(f"The pyramid neck needs 4 tapped layers, got {num_maps}.")
            half, quarter = max(in_channels // 2, 16), max(in_channels // 4, 16)
            self.scales = nn.ModuleList(
                [
                    nn.Sequential(_up2(in_channels, half), _up2(half, quarter)),
                    _up2(in_channels, half),
                    nn.Identity(),
                    nn.MaxPool2d(2),
                ]
            )
            self.out_channels = [quarter, half, in_channels, in_channels]
        else:
            self.out_channels = [in_channels] * num_maps

    def forward(self, tokens: list[torch.Tensor], grid: tuple[int, int, int]) -> list[torch.Tensor]:
        # channels_last lets oneDNN run the decoder's convolutions without layout reorders.
        maps = [
            tokens_to_map(t, grid).contiguous(memory_format=torch.channels_last) for t in tokens
        ]
        if self.pyramid:
            maps = [scale(m) for scale, m in zip(self.scales, maps, strict=True)]
        return maps


class MapNeck(nn.Module):
    """A CNN's feature levels pass straight through (channels-last, like the ViT neck)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.out_channels = list(channels)

    def forward(self, maps: list[torch.Tensor], grid: object = None) -> list[torch.Tensor]:
        return [m.contiguous(memory_format=torch.channels_last) for m in maps]

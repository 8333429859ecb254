"""UPerNet: a feature pyramid with a pyramid-pooling module on top.

Xiao et al., "Unified Perceptual Parsing for Scene Understanding", ECCV 2018; the pooling
module is PSPNet's (Zhao et al., CVPR 2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eofm.decoders.layers import conv_bn_relu


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class PyramidPooling(nn.Module):
    """Average-pool to several grid sizes, project, upsample and concatenate."""

    def __init__(self, in_ch: int, channels: int, scales: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(in_ch, channels, 1)) for s in scales
        )
        self.bottleneck = conv_bn_relu(in_ch + len(scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [_resize(branch(x), size) for branch in self.branches]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UperNetDecoder(nn.Module):
    """UPerNet over 4 maps of increasing stride; output at the finest map's resolution."""

    needs_pyramid = True

    def __init__(self, in_channels: list[int], channels: int = 256, **_: object) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], channels)
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = conv_bn_relu(len(in_channels) * channels, channels, 3)
        self.out_channels = channels

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        levels = [lateral(m) for lateral, m in zip(self.lateral, maps, strict=False)]
        levels.append(self.ppm(maps[-1]))
        for i in range(len(levels) - 1, 0, -1):  # top-down pathway
            levels[i - 1] = levels[i - 1] + _resize(levels[i], levels[i - 1].shape[-2:])
        outs = [fpn(level) for fpn, level in zip(self.fpn, levels, strict=False)]
        outs.append(levels[-1])
        size = outs[0].shape[-2:]
        return self.fuse(torch.cat([_resize(o, size) for o in outs], dim=1))

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
    """Average-pool to several grid sizes, project, upsample and concatenate.

    The pooled branches have no BatchNorm: a 1x1 pooled map of a batch of one has a single
    value per channel, which BatchNorm cannot normalise in training.
    """

    def __init__(self, in_ch: int, channels: int, scales: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(s), nn.Conv2d(in_ch, channels, 1), nn.ReLU(inplace=True)
            )
            for s in scales
        )
        self.bottleneck = conv_bn_relu(in_ch + len(scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [_resize(branch(x), size) for branch in self.branches]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UperNetDecoder(nn.Module):
    """UPerNet over 4 maps of increasing stride; output at the finest map's resolution.

    ``fuse="concat"`` is the original fusion: upsample every level to the finest
    resolution, concatenate and apply one 3x3 conv (4C -> C). On a CPU that conv is most
    of the decoder's cost. ``fuse="factorized"`` (the default) replaces it with a
    bottleneck, a 1x1 conv (4C -> C) then a 3x3 conv (C -> C), and computes the 1x1 part
    per level *before* upsampling: a 1x1 conv commutes exactly with bilinear
    upsampling, so this equals the 1x1 over the concatenation at a fraction of the cost.
    """

    needs_pyramid = True

    def __init__(
        self,
        in_channels: list[int],
        channels: int = 256,
        *,
        fuse: str = "factorized",
        **_: object,
    ) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], channels)
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in in_channels[:-1])
        if fuse == "concat":
            self.fuse = conv_bn_relu(len(in_channels) * channels, channels, 3)
        elif fuse == "factorized":
            self.reduce = nn.ModuleList(
                nn.Conv2d(channels, channels, 1, bias=False) for _ in in_channels
            )
            self.reduce_norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
            self.fuse = conv_bn_relu(channels, channels, 3)
        else:
            raise ValueError(f"UPerNet fuse must be 'factorized' or 'concat', got {fuse!r}")
        self.fuse_mode = fuse
        self.out_channels = channels

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        levels = [lateral(m) for lateral, m in zip(self.lateral, maps, strict=False)]
        levels.append(self.ppm(maps[-1]))
        for i in range(len(levels) - 1, 0, -1):  # top-down pathway
            levels[i - 1] = levels[i - 1] + _resize(levels[i], levels[i - 1].shape[-2:])
        outs = [fpn(level) for fpn, level in zip(self.fpn, levels, strict=False)]
        outs.append(levels[-1])
        size = outs[0].shape[-2:]
        if self.fuse_mode == "concat":
            return self.fuse(torch.cat([_resize(o, size) for o in outs], dim=1))
        reduced = _resize(self.reduce[-1](outs[-1]), size)
        for reduce, out in zip(self.reduce[:-1], outs[:-1], strict=True):
            reduced = reduced + _resize(reduce(out), size)
        return self.fuse(self.reduce_norm(reduced))

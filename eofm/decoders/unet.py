"""A UNet decoder over a feature pyramid (Ronneberger et al., "U-Net", MICCAI 2015).

From the deepest map up: upsample x2, concatenate the next shallower map (the skip
connection), two 3x3 conv-BN-ReLU blocks. The output is at the shallowest map's stride
(4 for the usual CNN backbones and for the ViT pyramid neck); the model upsamples the
logits to the input size. The decoder users of CNN backbones expect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eofm.decoders.layers import conv_bn_relu


class UNetDecoder(nn.Module):
    """Skip-connected upsampling from the deepest of ``in_channels`` maps to the shallowest."""

    needs_pyramid = True

    def __init__(self, in_channels: list[int], channels: int = 64, **_: object) -> None:
        super().__init__()
        widths = [channels * 2**i for i in range(len(in_channels) - 1)]  # shallow -> deep
        self.bottom = conv_bn_relu(in_channels[-1], widths[-1] if widths else channels)
        stages = []
        below = widths[-1] if widths else channels
        for skip, width in zip(reversed(in_channels[:-1]), reversed(widths), strict=True):
            stages.append(
                nn.Sequential(conv_bn_relu(below + skip, width), conv_bn_relu(width, width))
            )
            below = width
        self.stages = nn.ModuleList(stages)
        self.out_channels = below

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        x = self.bottom(maps[-1])
        for stage, skip in zip(self.stages, reversed(maps[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        return x

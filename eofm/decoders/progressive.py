"""A CPU-lean progressive-upsampling decoder.

In the spirit of SETR-PUP (Zheng et al., "Rethinking Semantic Segmentation from a
Sequence-to-Sequence Perspective with Transformers", CVPR 2021), but with
depthwise-separable convolutions and halving widths, so that the cost at full resolution
stays a few MFLOPs per pixel row instead of dominating a CPU step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eofm.decoders.layers import conv_bn_relu, separable_bn_relu


class ProgressiveDecoder(nn.Module):
    """Fuse the tapped maps with a 1x1 conv, then upsample x2 per stage to the patch size."""

    needs_pyramid = False
    needs_tokens = True  # fuses maps of one resolution: ViT tokens, not a CNN's levels

    def __init__(
        self, in_channels: list[int], channels: int = 64, *, patch_size: int = 16, **_: object
    ) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(sum(in_channels), channels, kernel=1)
        stages, width = [], channels
        for _ in range(max(1, math.ceil(math.log2(patch_size)))):
            out = max(width // 2, 16)
            stages.append(separable_bn_relu(width, out))
            width = out
        self.stages = nn.ModuleList(stages)
        self.out_channels = width

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        x = self.fuse(torch.cat(maps, dim=1))
        for stage in self.stages:
            x = stage(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return x

"""Small convolution blocks shared by the decoders."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def separable_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1 (MobileNet, Howard et al., 2017) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )

"""The linear decoder: the last tapped feature map as it is, for a 1x1 head.

A linear probe in the sense of He et al., "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022: the head is one 1x1 convolution on the patch grid and the logits
are upsampled bilinearly to the input size. The cheapest decoder there is, and the
honest measure of what the backbone's features alone carry.
"""

from __future__ import annotations

import torch
from torch import nn


class LinearDecoder(nn.Module):
    """Pass the last feature map on; the model's 1x1 head makes it linear."""

    needs_pyramid = False

    def __init__(self, in_channels: list[int], channels: int = 0, **_: object) -> None:
        super().__init__()
        self.out_channels = in_channels[-1]

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return maps[-1]

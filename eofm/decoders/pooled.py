"""Heads on a pooled feature vector, for one label (or a set of labels) per image chip.

The backbone's output is pooled to one vector per chip by :func:`pool_features`: the
mean of a ViT's patch tokens (global average pooling, which He et al., "Masked
Autoencoders Are Scalable Vision Learners", CVPR 2022, use for fine-tuning and linear
probing in place of the class token), or the spatial mean of a CNN's deepest feature map
(He et al., "Deep Residual Learning for Image Recognition", CVPR 2016). The decoder
then maps it to ``out_channels`` features for the model's final linear layer:
``pooled_linear`` passes it on (a linear probe), ``pooled_mlp`` adds one hidden layer
(LayerNorm, Linear, GELU, Dropout).
"""

from __future__ import annotations

import torch
from torch import nn


def pool_features(features: list[torch.Tensor], *, tokens: bool) -> torch.Tensor:
    """``(B, D)`` from the last tapped output: ViT tokens ``(B, 1 + N, D)`` (the class
    token dropped) or CNN maps ``(B, C, H, W)``."""
    last = features[-1]
    if tokens:
        return last[:, 1:].mean(dim=1)
    return last.mean(dim=(-2, -1))


class PooledLinearHead(nn.Module):
    """Pass the pooled vector on; the model's linear layer makes the head linear."""

    def __init__(self, in_channels: list[int], channels: int = 0, **_: object) -> None:
        super().__init__()
        self.out_channels = in_channels[-1]

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled


class PooledMLPHead(nn.Module):
    """One hidden layer of ``channels`` units on the pooled vector."""

    def __init__(
        self, in_channels: list[int], channels: int = 256, *, dropout: float = 0.0, **_: object
    ) -> None:
        super().__init__()
        self.out_channels = channels
        self.layers = nn.Sequential(
            nn.LayerNorm(in_channels[-1]),
            nn.Linear(in_channels[-1], channels),
            nn.GELU(),
            nn.Dropout(dropout),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.layers(pooled)

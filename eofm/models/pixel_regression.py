"""Pixel-wise regression: the dense segmentation model with one output channel, in the
target's units (a value per pixel: biomass in Mg/ha, canopy height in m, ...)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eofm.models.segmentation import SegmentationModel, build_segmentation_model
from eofm.recipe import Recipe


class TargetScale(nn.Module):
    """``y = x * std + mean``: the head learns the standardised target and the model
    answers in the target's units; ``mean`` and ``std`` (of the training targets) are
    buffers, kept in checkpoints."""

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


def target_scale(model: SegmentationModel) -> TargetScale:
    """The model's :class:`TargetScale` (the last layer of its head)."""
    return model.head[-1]


def build_pixel_regressor(
    recipe: Recipe,
    *,
    data_bands: Sequence[str],
    pretrained: bool | None = None,
    allow_random_init: bool = False,
    target_mean: float = 0.0,
    target_std: float = 1.0,
) -> SegmentationModel:
    """Backbone ► neck ► decoder ► 1x1 conv to one channel ► :class:`TargetScale`."""
    model = build_segmentation_model(
        recipe,
        num_classes=1,
        data_bands=data_bands,
        pretrained=pretrained,
        allow_random_init=allow_random_init,
    )
    model.head.append(TargetScale(target_mean, target_std))
    return model

"""Coarse grid (or a weather backbone's latent of it) ► super-resolution decoder ► optional
hard constraints ► fine grid.

The decoder (:mod:`eofm.decoders.pixel_shuffle`) reads the coarse fields, normalised, or
the latent grid of a backbone (Prithvi WxC's, channels last, turned channels first);
its outputs are mapped to physical units with the training targets' mean and std, and
each constrained variable then goes through its :class:`HardConstraint` against its own
coarse field (a softmax-constrained variable uses the raw outputs as logits). The model
returns physical fields ``(B, V, H, W)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from eofm.models.constraints import HardConstraint


class DownscalingModel(nn.Module):
    """What the downscaling task needs of a model: ``predict_batch`` -> physical fields."""

    cacheable = False

    def __init__(
        self,
        decoder: nn.Module,
        targets: Sequence[str],
        target_mean: Sequence[float],
        target_std: Sequence[float],
        constraints: Mapping[str, str],
        factor: int,
        backbone: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.targets = list(targets)
        self.register_buffer(
            "mean", torch.tensor(target_mean, dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(target_std, dtype=torch.float32).view(1, -1, 1, 1))
        self.constraints = nn.ModuleDict(
            {name: HardConstraint(kind, factor) for name, kind in constraints.items()}
        )

    @property
    def backbone_needs_grad(self) -> bool:
        return self.backbone is not None and any(
            p.requires_grad for p in self.backbone.parameters()
        )

    def forward(self, coarse: Any, coarse_targets: torch.Tensor) -> torch.Tensor:
        """``coarse``: the coarse fields ``(B, C, h, w)``, or with a backbone its batch."""
        if self.backbone is not None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone_needs_grad):
                coarse = self.backbone(coarse).permute(0, 3, 1, 2)
        raw = self.decoder(coarse)
        physical = raw * self.std + self.mean
        if not len(self.constraints):
            return physical
        fields = []
        for v, name in enumerate(self.targets):
            layer = self.constraints[name] if name in self.constraints else None
            if layer is None:
                fields.append(physical[:, v])
            else:
                source = raw[:, v] if layer.kind == "softmax" else physical[:, v]
                fields.append(layer(source, coarse_targets[:, v]))
        return torch.stack(fields, dim=1)

    def predict_batch(self, batch: dict) -> torch.Tensor:
        inputs = batch["wxc"] if self.backbone is not None else batch["coarse"]
        return self(inputs, batch["coarse_target"])

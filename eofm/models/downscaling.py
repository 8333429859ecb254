"""Coarse grid ► super-resolution decoder ► optional hard constraints ► fine grid.

The decoder (:mod:`eofm.decoders.pixel_shuffle`) reads the coarse fields, normalised;
its outputs are mapped to physical units with the training targets' mean and std, and
each constrained variable then goes through its :class:`HardConstraint` against its own
coarse field (a softmax-constrained variable uses the raw outputs as logits). The model
returns physical fields ``(B, V, H, W)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from eofm.models.constraints import HardConstraint


class DownscalingModel(nn.Module):
    """What the downscaling task needs of a model: ``predict_batch`` -> physical fields."""

    cacheable = False
    backbone_needs_grad = True

    def __init__(
        self,
        decoder: nn.Module,
        targets: Sequence[str],
        target_mean: Sequence[float],
        target_std: Sequence[float],
        constraints: Mapping[str, str],
        factor: int,
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.targets = list(targets)
        self.register_buffer(
            "mean", torch.tensor(target_mean, dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(target_std, dtype=torch.float32).view(1, -1, 1, 1))
        self.constraints = nn.ModuleDict(
            {name: HardConstraint(kind, factor) for name, kind in constraints.items()}
        )

    def forward(self, coarse: torch.Tensor, coarse_targets: torch.Tensor) -> torch.Tensor:
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
        return self(batch["coarse"], batch["coarse_target"])

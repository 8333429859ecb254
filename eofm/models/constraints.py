"""Hard physical constraints for downscaling: the fine-grid prediction of every coarse
cell averages exactly to that cell's coarse value.

Harder et al., "Hard-Constrained Deep Learning for Climate Downscaling", JMLR 2023
(arXiv 2208.05424). With ``mean_cell`` the average over each ``f x f`` block and ``up``
the nearest (Kronecker) upsampling by ``f``:

- additive: ``out = y + up(x - mean_cell(y))``, for any real variable;
- multiplicative: ``out = y * up(x / mean_cell(y))``, for positive ``y`` and ``x``;
- softmax: ``out = exp(y) * up(x / mean_cell(exp(y)))``, non-negative by construction
  (precipitation, water content).

Each holds to float precision whatever the network outputs, so conservation is not left
to the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("additive", "multiplicative", "softmax")


def mean_cell(values: torch.Tensor, factor: int) -> torch.Tensor:
    """``(B, H, W)`` -> ``(B, H/f, W/f)`` block means."""
    return F.avg_pool2d(values[:, None], factor)[:, 0]


def upsample(values: torch.Tensor, factor: int) -> torch.Tensor:
    """``(B, h, w)`` -> ``(B, h f, w f)``, each coarse value repeated over its block."""
    return values.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


class HardConstraint(nn.Module):
    """One constraint layer for one variable (no parameters)."""

    def __init__(self, kind: str, factor: int) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"constraint must be one of {KINDS}, got {kind!r}")
        self.kind, self.factor = kind, factor

    def forward(self, raw: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """``raw (B, H, W)``: the network's field (physical units; for softmax, any real
        logits); ``coarse (B, H/f, W/f)``: the coarse input it must average to."""
        f = self.factor
        if self.kind == "additive":
            return raw + upsample(coarse - mean_cell(raw, f), f)
        if self.kind == "multiplicative":
            return raw * upsample(coarse / mean_cell(raw, f), f)
        # softmax: subtract each block's maximum first (it cancels) so exp cannot overflow
        block_max = F.max_pool2d(raw[:, None], f)[:, 0]
        weights = torch.exp(raw - upsample(block_max, f))
        return weights * upsample(coarse / mean_cell(weights, f), f)

    def extra_repr(self) -> str:
        return f"{self.kind}, factor={self.factor}"

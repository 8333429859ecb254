"""Downscaling as a LightningModule: masked MSE on standardised fields, and the scores of
the downscaling literature in physical units per variable.

- RMSE, MAE and bias, latitude-weighted (as :mod:`eofm.lightning_tasks.regression`);
- Pearson correlation of prediction and truth over the scored cells;
- CSI at thresholds (hits / (hits + misses + false alarms)), for precipitation-like
  variables (``task.thresholds``);
- the power-spectrum ratio: the radially averaged power of the prediction over that of
  the truth in the upper half of the wavenumbers (1 when fine scales are as energetic as
  observed, below 1 when blurred; as in Harder et al., JMLR 2023);
- the mass violation ``mean |mean_cell(prediction) - coarse|`` (0 with a constraint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from eofm.lightning_tasks.base import StageTask
from eofm.lightning_tasks.regression import GriddedTargets, LatWeightedScores, masked_mse


def radial_power(fields: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` -> radially averaged power spectrum ``(K,)`` (mean over fields)."""
    n, h, w = fields.shape
    power = torch.fft.fft2(fields - fields.mean(dim=(-2, -1), keepdim=True)).abs() ** 2
    ky = torch.fft.fftfreq(h, device=fields.device)[:, None] * h
    kx = torch.fft.fftfreq(w, device=fields.device)[None, :] * w
    radius = torch.sqrt(ky**2 + kx**2).round().long().flatten()
    bins = int(min(h, w) // 2) + 1
    keep = radius < bins
    total = torch.zeros(bins, dtype=torch.float64, device=fields.device)
    total.index_add_(0, radius[keep], power.reshape(n, -1)[:, keep].sum(0).double())
    count = torch.bincount(radius[keep], minlength=bins).clamp(min=1)
    return total / count / n


class DownscalingScores(Metric):
    """Per-variable Pearson r, CSI at thresholds, power-spectrum ratio, mass violation."""

    full_state_update = False

    def __init__(self, num_vars: int, factor: int, thresholds: Sequence[Sequence[float]]) -> None:
        super().__init__()
        self.factor, self.thresholds = factor, [list(t) for t in thresholds]
        for name in ("n", "sx", "sy", "sxx", "syy", "sxy", "violation", "cells"):
            self.add_state(name, torch.zeros(num_vars, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "power_pred", torch.zeros(num_vars, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "power_true", torch.zeros(num_vars, dtype=torch.float64), dist_reduce_fx="sum"
        )
        width = max((len(t) for t in self.thresholds), default=0)
        for name in ("hits", "misses", "false_alarms"):
            self.add_state(
                name, torch.zeros(num_vars, width, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, coarse: torch.Tensor
    ) -> None:
        for v in range(pred.shape[1]):
            p, t, m = pred[:, v].double(), target[:, v].double(), valid[:, v]
            x, y = p[m], t[m]
            self.n[v] += x.numel()
            self.sx[v] += x.sum()
            self.sy[v] += y.sum()
            self.sxx[v] += (x * x).sum()
            self.syy[v] += (y * y).sum()
            self.sxy[v] += (x * y).sum()
            cell_means = F.avg_pool2d(pred[:, v : v + 1].float(), self.factor)[:, 0]
            gap = (cell_means - coarse[:, v]).abs()
            self.violation[v] += gap.double().sum()
            self.cells[v] += gap.numel()
            high = radial_power(pred[:, v].float()), radial_power(target[:, v].float())
            half = len(high[0]) // 2
            self.power_pred[v] += high[0][half:].sum()
            self.power_true[v] += high[1][half:].sum()
            for k, threshold in enumerate(self.thresholds[v] if v < len(self.thresholds) else []):
                above_p, above_t = x >= threshold, y >= threshold
                self.hits[v, k] += (above_p & above_t).sum()
                self.misses[v, k] += (~above_p & above_t).sum()
                self.false_alarms[v, k] += (above_p & ~above_t).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.n.clamp(min=1)
        cov = self.sxy / n - (self.sx / n) * (self.sy / n)
        var_x = (self.sxx / n - (self.sx / n) ** 2).clamp(min=0)
        var_y = (self.syy / n - (self.sy / n) ** 2).clamp(min=0)
        scores = {
            "pearson": cov / (var_x * var_y).sqrt().clamp(min=1e-30),
            "mass_violation": self.violation / self.cells.clamp(min=1),
            "spectrum_ratio": self.power_pred / self.power_true.clamp(min=1e-30),
        }
        denominator = (self.hits + self.misses + self.false_alarms).clamp(min=1)
        scores["csi"] = self.hits / denominator
        return scores


class DownscalingTask(GriddedTargets, StageTask):
    """Train, validate and test a :class:`~eofm.models.downscaling.DownscalingModel`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        targets: Sequence[str],
        target_mean: Sequence[float],
        target_std: Sequence[float],
        lat: torch.Tensor,
        factor: int,
        thresholds: Mapping[str, Sequence[float]] | None = None,
        **optimizer: object,
    ) -> None:
        super().__init__(model, **optimizer)
        self.targets = list(targets)
        self.factor = factor
        self.thresholds = {k: list(v) for k, v in (thresholds or {}).items()}
        self.set_gridded_targets(target_mean, target_std, lat)
        self.setup_metrics()

    def make_metrics(self) -> nn.ModuleDict:
        per_var = [self.thresholds.get(name, []) for name in self.targets]
        return nn.ModuleDict(
            {
                "errors": LatWeightedScores(len(self.targets), self.lat_weights, None),
                "downscaling": DownscalingScores(len(self.targets), self.factor, per_var),
            }
        )

    def batch_size(self, batch: dict) -> int:
        return batch["target"].shape[0]

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        scaled = ((outputs - self.mean) / self.std, (batch["target"] - self.mean) / self.std)
        return masked_mse(*scaled, batch["valid"])

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        metrics["errors"].update(outputs, batch["target"], batch["valid"])
        metrics["downscaling"].update(
            outputs, batch["target"], batch["valid"], batch["coarse_target"]
        )

    def epoch_scores(self, metrics: nn.ModuleDict, stage: str) -> dict[str, torch.Tensor]:
        if not bool((metrics["errors"].w > 0).any()):
            return {}
        out = {}
        for key, values in {
            **metrics["errors"].compute(),
            **metrics["downscaling"].compute(),
        }.items():
            # torchmetrics squeezes one-element results: shape them back per variable
            values = values.reshape(len(self.targets), -1)
            for v, name in enumerate(self.targets):
                if key == "csi":
                    for k, threshold in enumerate(self.thresholds.get(name, [])):
                        out[f"{stage}/csi_{name}_{threshold:g}"] = values[v, k].float()
                else:
                    out[f"{stage}/{key}_{name}"] = values[v, 0].float()
        return out

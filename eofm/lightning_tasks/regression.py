"""Gridded regression as a LightningModule: masked MSE, latitude-weighted scores.

Scores follow WeatherBench 2 (Rasp et al., 2024): errors are weighted by the cosine of
latitude, normalised to mean one. RMSE, MAE and bias are reported in physical units per
variable; ACC (anomaly correlation) when a climatology is given. Pixels whose target is
missing, or sea pixels of a land-only variable, never count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import Metric

from eofm.lightning_tasks.base import StageTask


def latitude_weights(lat: torch.Tensor) -> torch.Tensor:
    """cos(latitude), normalised to mean 1 (WeatherBench 2)."""
    w = torch.cos(torch.deg2rad(lat.double())).clamp(min=0).float()
    return w / w.mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MSE per variable over its valid pixels, averaged over variables that have any."""
    valid = valid.to(pred.dtype)
    per_var = ((pred - target) ** 2 * valid).sum(dim=(0, 2, 3))
    count = valid.sum(dim=(0, 2, 3))
    present = count > 0
    if not bool(present.any()):
        return pred.sum() * 0.0
    return (per_var[present] / count[present]).mean()


class LatWeightedScores(Metric):
    """Per-variable lat-weighted RMSE, MAE, bias and (with a climatology) ACC."""

    full_state_update = False

    def __init__(self, num_vars: int, weights: torch.Tensor, climatology: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weights", weights.view(1, 1, -1, 1), persistent=False)
        clim = climatology if climatology is not None else torch.zeros(0)
        self.register_buffer("climatology", clim, persistent=False)
        for name in ("sq", "abs", "err", "w", "pa", "pp", "oo"):
            self.add_state(name, torch.zeros(num_vars, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        w = (self.weights[..., : pred.shape[-2], :] * valid).double()
        err = (pred - target).double()
        dims = (0, 2, 3)
        self.sq += (w * err**2).sum(dims)
        self.abs += (w * err.abs()).sum(dims)
        self.err += (w * err).sum(dims)
        self.w += w.sum(dims)
        if self.climatology.numel():
            clim = self.climatology[None, :, : pred.shape[-2], : pred.shape[-1]].double()
            pa, oa = pred.double() - clim, target.double() - clim
            self.pa += (w * pa * oa).sum(dims)
            self.pp += (w * pa**2).sum(dims)
            self.oo += (w * oa**2).sum(dims)

    def compute(self) -> dict[str, torch.Tensor]:
        w = self.w.clamp(min=1e-12)
        scores = {"rmse": (self.sq / w).sqrt(), "mae": self.abs / w, "bias": self.err / w}
        if self.climatology.numel():
            scores["acc"] = self.pa / (self.pp * self.oo).sqrt().clamp(min=1e-30)
        return scores


class GriddedTargets:
    """Targets on a latitude-longitude grid: their normalisation, as ``(1, V, 1, 1)``
    buffers, and the cos-latitude weights of the scores."""

    def set_gridded_targets(
        self, target_mean: Sequence[float], target_std: Sequence[float], lat: torch.Tensor
    ) -> None:
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(target_mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(target_std).view(shape), persistent=False)
        self.lat_weights = latitude_weights(lat)


class RegressionTask(GriddedTargets, StageTask):
    """Train, validate and test a :class:`~eofm.models.latent_regression.LatentRegressionModel`.

    Batches carry ``inputs`` (an Aurora batch) or, from the latent cache, ``latent``;
    plus ``target`` (normalised) and ``valid``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        targets: Sequence[str],
        target_mean: Sequence[float],
        target_std: Sequence[float],
        lat: torch.Tensor,
        climatology: torch.Tensor | None = None,
        **optimizer: object,
    ) -> None:
        super().__init__(model, **optimizer)
        self.targets = list(targets)
        self.set_gridded_targets(target_mean, target_std, lat)
        self.climatology = climatology
        self.setup_metrics()

    def make_metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict(
            {"scores": LatWeightedScores(len(self.targets), self.lat_weights, self.climatology)}
        )

    def batch_size(self, batch: dict) -> int:
        return batch["target"].shape[0]

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return masked_mse(outputs, batch["target"], batch["valid"])

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        physical = (outputs * self.std + self.mean, batch["target"] * self.std + self.mean)
        metrics["scores"].update(*physical, batch["valid"])

    def epoch_scores(self, metrics: nn.ModuleDict, stage: str) -> dict[str, torch.Tensor]:
        metric = metrics["scores"]
        if not bool((metric.w > 0).any()):
            return {}
        scores = metric.compute()
        out = {}
        for key, values in scores.items():
            for name, value in zip(self.targets, values.reshape(-1), strict=True):
                out[f"{stage}/{key}_{name}"] = value.float()
        out[f"{stage}/rmse_normalised"] = torch.tensor(
            math.fsum(
                float(r / s)
                for r, s in zip(scores["rmse"].reshape(-1), self.std.flatten(), strict=True)
            )
            / len(self.targets)
        )
        return out

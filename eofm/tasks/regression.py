"""Gridded regression as a LightningModule: masked MSE, latitude-weighted scores.

Scores follow WeatherBench 2 (Rasp et al., 2024): errors are weighted by the cosine of
latitude, normalised to mean one. RMSE, MAE and bias are reported in physical units per
variable; ACC (anomaly correlation) when a climatology is given. Pixels whose target is
missing, or sea pixels of a land-only variable, never count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
import torch
from torch import nn
from torchmetrics import Metric

from eofm.tasks.segmentation import configure_adamw

STAGES = ("train", "val", "test")


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
        for name in ("sq", "abs", "err", "w", "pa", "oa", "pp", "oo"):
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


class RegressionTask(L.LightningModule):
    """Train, validate and test a :class:`~eofm.weather_model.LatentRegressionModel`.

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
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        scheduler: str = "cosine",
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "lat", "climatology"])
        self.model = model
        self.targets = list(targets)
        self.register_buffer("mean", torch.tensor(target_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(target_std).view(1, -1, 1, 1), persistent=False)
        weights = latitude_weights(lat)
        for stage in STAGES:
            setattr(
                self, f"{stage}_scores", LatWeightedScores(len(self.targets), weights, climatology)
            )

    def forward(self, inputs) -> torch.Tensor:
        return self.model(inputs)

    def predict_batch(self, batch: dict) -> torch.Tensor:
        if "latent" in batch:
            return self.model.decode_batch(batch)
        return self.model(batch["inputs"])

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        pred = self.predict_batch(batch)
        target, valid = batch["target"], batch["valid"]
        loss = masked_mse(pred, target, valid)
        physical = (pred.detach() * self.std + self.mean, target * self.std + self.mean)
        getattr(self, f"{stage}_scores").update(*physical, valid)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            batch_size=target.shape[0],
        )
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_scores")
        if not bool((metric.w > 0).any()):
            return
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
        self.log_dict(out)
        metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        return configure_adamw(self)

"""Pixel-wise regression as a LightningModule: MSE, L1 or Huber loss over the valid
pixels, with RMSE, MAE, R² and bias (torchmetrics).

The loss is computed on standardised values (``(y - mean) / std`` of the training
targets, the model's :class:`~eofm.models.pixel_regression.TargetScale`), so that one
learning rate and the Huber threshold ``huber_delta`` (in standard deviations; Huber,
"Robust Estimation of a Location Parameter", 1964) serve targets of any unit; the
metrics are in the target's units. Pixels whose target is NaN (nodata, an invalid input
band, padding) never count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, R2Score

from eofm.lightning_tasks.base import StageTask

LOSSES = ("mse", "l1", "huber")


def masked_loss(
    prediction: torch.Tensor, target: torch.Tensor, kind: str, delta: float = 1.0
) -> torch.Tensor:
    """``kind`` (mse, l1, huber) between standardised ``prediction`` and ``target``
    ``(B, H, W)`` over the pixels where the target is finite; 0 (with a gradient path)
    when there are none."""
    valid = torch.isfinite(target)
    if not valid.any():
        return prediction.sum() * 0.0
    p, t = prediction[valid], target[valid]
    if kind == "l1":
        return F.l1_loss(p, t)
    if kind == "huber":
        return F.huber_loss(p, t, delta=delta)
    return F.mse_loss(p, t)


class PixelRegressionTask(StageTask):
    """Train, validate and test a model whose ``predict_batch`` gives ``(B, 1, H, W)``."""

    def __init__(
        self, model: nn.Module, *, loss: str = "mse", huber_delta: float = 1.0, **optimizer: object
    ) -> None:
        super().__init__(model, **optimizer)
        self.loss_name, self.huber_delta = loss, huber_delta
        self.setup_metrics()

    def make_metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict(
            {
                "RMSE": MeanSquaredError(squared=False),
                "MAE": MeanAbsoluteError(),
                "R2": R2Score(),
                "bias": MeanMetric(),
            }
        )

    def batch_size(self, batch: dict) -> int:
        return batch["target"].shape[0]

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        scale = self.model.head[-1]  # the model's TargetScale
        standard = (outputs[:, 0].float() - scale.mean) / scale.std
        target = (batch["target"].float() - scale.mean) / scale.std
        return masked_loss(standard, target, self.loss_name, self.huber_delta)

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        target = batch["target"].float()
        valid = torch.isfinite(target)
        if int(valid.sum()) < 2:  # R² needs two pixels
            return
        p, t = outputs[:, 0].float()[valid], target[valid]
        for name in ("RMSE", "MAE", "R2"):
            metrics[name].update(p, t)
        metrics["bias"].update(p - t)

    def epoch_scores(self, metrics: nn.ModuleDict, stage: str) -> dict[str, torch.Tensor]:
        if not metrics["RMSE"].update_called:
            return {}
        return {f"{stage}/{name}": metric.compute() for name, metric in metrics.items()}

"""Semantic segmentation as a LightningModule: CE and dice losses, torchmetrics scores.

Dice loss: Milletari et al., "V-Net", 3DV 2016. Pixels labelled ``ignore_index`` (no
label, or an invalid input pixel) never contribute to a loss or a metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from eofm.lightning_tasks.base import StageTask


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Soft multi-class dice over the valid pixels, averaged over classes present."""
    valid = target != ignore_index
    probs = logits.softmax(dim=1) * valid.unsqueeze(1)
    one_hot = F.one_hot(target.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2)
    one_hot = one_hot * valid.unsqueeze(1)
    dims = (0, 2, 3)
    inter = (probs * one_hot).sum(dims)
    denom = probs.sum(dims) + one_hot.sum(dims)
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return 1 - dice.mean()


class SegmentationTask(StageTask):
    """Train, validate and test a :class:`~eofm.models.segmentation.SegmentationModel`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        class_names: Sequence[str],
        ignore_index: int = -1,
        loss: str = "ce",
        class_weights: Sequence[float] | None = None,
        **optimizer: object,
    ) -> None:
        super().__init__(model, **optimizer)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.ignore_index = ignore_index
        self.loss_name = loss
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.setup_metrics()

    def make_metrics(self) -> nn.ModuleDict:
        k, ig = self.num_classes, self.ignore_index
        return nn.ModuleDict(
            {
                "iou": MulticlassJaccardIndex(k, average="none", ignore_index=ig),
                "f1": MulticlassF1Score(k, average="none", ignore_index=ig),
                "acc": MulticlassAccuracy(k, average="micro", ignore_index=ig),
            }
        )

    def batch_size(self, batch: dict) -> int:
        return batch["mask"].shape[0]

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.compute_loss(outputs, batch["mask"])

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not bool((target != self.ignore_index).any()):
            return logits.sum() * 0.0  # a batch with no labelled pixel carries no signal
        loss = logits.new_zeros(())
        if "ce" in self.loss_name:
            loss = loss + F.cross_entropy(
                logits, target, weight=self.class_weights, ignore_index=self.ignore_index
            )
        if "dice" in self.loss_name:
            loss = loss + dice_loss(logits, target, self.ignore_index)
        return loss

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        preds = outputs.argmax(dim=1)
        for metric in metrics.values():
            metric.update(preds, batch["mask"])

    def epoch_scores(self, metrics: nn.ModuleDict, stage: str) -> dict[str, torch.Tensor]:
        iou, f1, acc = (metrics[name].compute() for name in ("iou", "f1", "acc"))
        scores = {f"{stage}/mIoU": iou.mean(), f"{stage}/accuracy": acc, f"{stage}/mF1": f1.mean()}
        for name, i, f in zip(self.class_names, iou, f1, strict=True):
            scores[f"{stage}/IoU_{name}"] = i
            scores[f"{stage}/F1_{name}"] = f
        return scores

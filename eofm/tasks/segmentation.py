"""Semantic segmentation as a LightningModule: CE and dice losses, torchmetrics scores.

Dice loss: Milletari et al., "V-Net", 3DV 2016. Pixels labelled ``ignore_index`` (no
label, or an invalid input pixel) never contribute to a loss or a metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

STAGES = ("train", "val", "test")


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


class SegmentationTask(L.LightningModule):
    """Train, validate and test a :class:`~eofm.model.SegmentationModel`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        class_names: Sequence[str],
        ignore_index: int = -1,
        loss: str = "ce",
        class_weights: Sequence[float] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        scheduler: str = "cosine",
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.ignore_index = ignore_index
        self.loss_name = loss
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        for stage in STAGES:
            k, ig = self.num_classes, ignore_index
            setattr(
                self, f"{stage}_iou", MulticlassJaccardIndex(k, average="none", ignore_index=ig)
            )
            setattr(self, f"{stage}_f1", MulticlassF1Score(k, average="none", ignore_index=ig))
            setattr(self, f"{stage}_acc", MulticlassAccuracy(k, average="micro", ignore_index=ig))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

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

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        target = batch["mask"]
        logits = self.model.decode_batch(batch) if "latent" in batch else self.model(batch["image"])
        loss = self.compute_loss(logits, target)
        preds = logits.argmax(dim=1)
        for metric in ("iou", "f1", "acc"):
            getattr(self, f"{stage}_{metric}").update(preds, target)
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
        iou = getattr(self, f"{stage}_iou").compute()
        f1 = getattr(self, f"{stage}_f1").compute()
        acc = getattr(self, f"{stage}_acc").compute()
        scores = {f"{stage}/mIoU": iou.mean(), f"{stage}/accuracy": acc, f"{stage}/mF1": f1.mean()}
        for name, i, f in zip(self.class_names, iou, f1, strict=True):
            scores[f"{stage}/IoU_{name}"] = i
            scores[f"{stage}/F1_{name}"] = f
        self.log_dict(scores, prog_bar=False)
        for metric in ("iou", "f1", "acc"):
            getattr(self, f"{stage}_{metric}").reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        return configure_adamw(self)


def configure_adamw(module: L.LightningModule):
    """AdamW on the trainable parameters, with optional warmup + cosine decay per step
    (Loshchilov & Hutter, ICLR 2017 and 2019)."""
    hp = module.hparams
    params = [p for p in module.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
    if hp.scheduler == "none":
        return optimizer
    total = max(1, int(module.trainer.estimated_stepping_batches))
    warmup = min(hp.warmup_steps, total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

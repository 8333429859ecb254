"""One label per image chip (EuroSAT-style scene classification) as a LightningModule.

Cross-entropy on the chip's logits; scores (torchmetrics) as the EuroSAT benchmark
reports them (Helber et al., IEEE JSTARS 2019): overall accuracy, with F1 per class and
their mean (macro F1), so that a class the model never predicts shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from eofm.lightning_tasks.base import StageTask


class SceneClassificationTask(StageTask):
    """Train, validate and test a model whose ``predict_batch`` gives ``(B, classes)`` logits."""

    def __init__(
        self,
        model: nn.Module,
        *,
        class_names: Sequence[str],
        label_smoothing: float = 0.0,
        **optimizer: object,
    ) -> None:
        super().__init__(model, **optimizer)
        self.class_names = list(class_names)
        self.label_smoothing = label_smoothing
        self.setup_metrics()

    def make_metrics(self) -> nn.ModuleDict:
        k = len(self.class_names)
        return nn.ModuleDict(
            {
                "accuracy": MulticlassAccuracy(k, average="micro"),
                "f1": MulticlassF1Score(k, average="none"),
            }
        )

    def batch_size(self, batch: dict) -> int:
        return batch["label"].shape[0]

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(
            outputs.float(), batch["label"], label_smoothing=self.label_smoothing
        )

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        for metric in metrics.values():
            metric.update(outputs.float(), batch["label"])

    def epoch_scores(self, metrics: nn.ModuleDict, stage: str) -> dict[str, torch.Tensor]:
        if not metrics["accuracy"].update_called:
            return {}
        f1 = metrics["f1"].compute()
        scores = {f"{stage}/accuracy": metrics["accuracy"].compute(), f"{stage}/mF1": f1.mean()}
        scores.update({f"{stage}/F1_{c}": f1[i] for i, c in enumerate(self.class_names)})
        return scores

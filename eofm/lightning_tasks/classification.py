"""Binary classification of samples (e.g. next-day fire danger) as a LightningModule.

Imbalance-aware losses: the focal loss (Lin et al., "Focal Loss for Dense Object
Detection", ICCV 2017; torchvision's ``sigmoid_focal_loss``) or BCE weighted by the
negative/positive ratio; or ``ce``, the unweighted cross-entropy of the Mesogeos baselines. Scores (torchmetrics): AUPRC (average precision, the headline
for rare events), AUROC, the expected calibration error (a reliability check of the
probabilities; Guo et al., ICML 2017), and F1, precision and recall at the threshold that
maximised F1 on the validation split, which the model keeps for testing and prediction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryCalibrationError,
    BinaryPrecisionRecallCurve,
)

from eofm.lightning_tasks.base import StageTask


class ClassificationTask(StageTask):
    """Train, validate and test a model whose ``predict_batch`` returns one logit a sample."""

    def __init__(
        self, model: nn.Module, *, loss: str = "focal", pos_weight: float = 1.0, **optimizer: object
    ) -> None:
        super().__init__(model, **optimizer)
        self.loss_name = loss
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)), persistent=False)
        self.setup_metrics()

    def make_metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict(
            {
                "auprc": BinaryAveragePrecision(),
                "auroc": BinaryAUROC(),
                "ece": BinaryCalibrationError(n_bins=10),
                "curve": BinaryPrecisionRecallCurve(),
            }
        )

    def batch_size(self, batch: dict) -> int:
        return batch["label"].shape[0]

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        target = batch["label"].float()
        if self.loss_name == "focal":
            from torchvision.ops import sigmoid_focal_loss

            return sigmoid_focal_loss(outputs, target, reduction="mean")
        if self.loss_name == "ce":  # the two-class cross-entropy of the Mesogeos baselines
            return F.binary_cross_entropy_with_logits(outputs, target)
        return F.binary_cross_entropy_with_logits(outputs, target, pos_weight=self.pos_weight)

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        probs, target = outputs.sigmoid(), batch["label"].long()
        for metric in metrics.values():
            metric.update(probs, target)

    def epoch_scores(self, metrics: nn.ModuleDict, stage: str) -> dict[str, torch.Tensor]:
        if not metrics["curve"].preds:  # nothing seen this epoch
            return {}
        precision, recall, thresholds = metrics["curve"].compute()
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        if stage == "val" and len(thresholds):  # the threshold testing will use
            best = int(f1[:-1].argmax())
            self.model.threshold.fill_(float(thresholds[best]))
        scores = {
            f"{stage}/AUPRC": metrics["auprc"].compute(),
            f"{stage}/AUROC": metrics["auroc"].compute(),
            f"{stage}/ECE": metrics["ece"].compute(),
        }
        at = self.model.threshold
        index = int((thresholds >= at).nonzero()[0]) if bool((thresholds >= at).any()) else -1
        scores[f"{stage}/precision"] = precision[index]
        scores[f"{stage}/recall"] = recall[index]
        scores[f"{stage}/F1"] = f1[index]
        scores[f"{stage}/threshold"] = at.clone()
        return scores

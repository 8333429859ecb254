"""Labels of image chips as LightningModules: one label per chip (EuroSAT) or a set of
them (BigEarthNet, :class:`MultiLabelSceneTask`).

Cross-entropy on the chip's logits; scores (torchmetrics) as the EuroSAT benchmark
reports them (Helber et al., IEEE JSTARS 2019): overall accuracy, with F1 per class and
their mean (macro F1), so that a class the model never predicts shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import CatMetric, Metric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAveragePrecision,
)
from torchmetrics.functional.classification import multilabel_f1_score

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


class ThresholdSweep(Metric):
    """True/false positives and false negatives, summed over classes, at each threshold of
    a grid: micro-F1 as a function of the threshold, in constant memory."""

    full_state_update = False

    def __init__(self, thresholds: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("thresholds", thresholds)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.zeros(len(thresholds)), dist_reduce_fx="sum")

    def update(self, probabilities: torch.Tensor, target: torch.Tensor) -> None:
        given = probabilities[None] >= self.thresholds[:, None, None]  # (T, B, C)
        truth = target[None].bool()
        self.tp += (given & truth).sum(dim=(1, 2))
        self.fp += (given & ~truth).sum(dim=(1, 2))
        self.fn += (~given & truth).sum(dim=(1, 2))

    def compute(self) -> torch.Tensor:
        """Micro-F1 at each threshold."""
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn).clamp(min=1)


class MultiLabelSceneTask(StageTask):
    """A set of labels per chip (BigEarthNet): a sigmoid per class, binary cross-entropy.

    Scores as the BigEarthNet benchmarks report them (Sumbul et al., "BigEarthNet-MM",
    IEEE GRSM 2021; Clasen et al., reBEN, 2024): mean average precision over all
    decisions (micro) and per class (macro), threshold-free; and micro and macro F1 at the
    threshold that maximised micro-F1 on the validation split (a grid of 0.05 steps),
    which the model keeps (its ``threshold`` buffer, saved in checkpoints) for testing
    and for ``eofm predict``.
    """

    def __init__(self, model: nn.Module, *, class_names: Sequence[str], **optimizer: object):
        super().__init__(model, **optimizer)
        self.class_names = list(class_names)
        self.setup_metrics()

    def make_metrics(self) -> nn.ModuleDict:
        k = len(self.class_names)
        return nn.ModuleDict(
            {
                "mAP_micro": MultilabelAveragePrecision(k, average="micro"),
                "mAP_macro": MultilabelAveragePrecision(k, average="macro"),
                "sweep": ThresholdSweep(torch.arange(0.05, 0.951, 0.05)),
                "probabilities": CatMetric(),
                "target": CatMetric(),
            }
        )

    def batch_size(self, batch: dict) -> int:
        return batch["label"].shape[0]

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs.float(), batch["label"].float())

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        probabilities, target = outputs.float().sigmoid(), batch["label"].long()
        metrics["mAP_micro"].update(probabilities, target)
        metrics["mAP_macro"].update(probabilities, target)
        metrics["sweep"].update(probabilities, target)
        metrics["probabilities"].update(probabilities)
        metrics["target"].update(target.float())

    def epoch_scores(self, metrics: nn.ModuleDict, stage: str) -> dict[str, torch.Tensor]:
        if not metrics["sweep"].update_called:
            return {}
        if stage == "val":  # the threshold that testing and prediction use
            sweep = metrics["sweep"]
            self.model.threshold.fill_(float(sweep.thresholds[int(sweep.compute().argmax())]))
        threshold = self.model.threshold
        k = len(self.class_names)
        probabilities = metrics["probabilities"].compute().reshape(-1, k)
        target = metrics["target"].compute().reshape(-1, k).long()
        given = (probabilities >= threshold).long()
        return {
            f"{stage}/mAP_micro": metrics["mAP_micro"].compute(),
            f"{stage}/mAP_macro": metrics["mAP_macro"].compute(),
            f"{stage}/F1_micro": multilabel_f1_score(given, target, k, average="micro"),
            f"{stage}/F1_macro": multilabel_f1_score(given, target, k, average="macro"),
            f"{stage}/threshold": threshold.clone(),
        }

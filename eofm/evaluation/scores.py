"""Pixel scores that add up: a confusion matrix and calibration sums per group of pixels.

Everything here is a sum over pixels, so scores of chips add into scores of regions and
splits without keeping any prediction. From the confusion matrix come IoU, F1 and
accuracy (as torchmetrics defines them, 0 for a class never seen nor predicted); from the
calibration sums the expected calibration error over equal-width confidence bins (Guo et
al., "On Calibration of Modern Neural Networks", ICML 2017), the negative log-likelihood
and the Brier score (Brier, Monthly Weather Review 1950), each at one or more
temperatures of the logits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Equal-width confidence bins of the calibration error and the reliability diagram.
BINS = 15


@dataclass
class PixelScores:
    """Sums over the labelled pixels of some group; ``+`` merges two groups."""

    num_classes: int
    temperatures: tuple[float, ...] = (1.0,)
    confusion: np.ndarray = field(default=None)  # (K, K) int64, rows = truth
    bin_count: np.ndarray = field(default=None)  # (T, BINS)
    bin_confidence: np.ndarray = field(default=None)  # (T, BINS) sums
    bin_correct: np.ndarray = field(default=None)  # (T, BINS) sums
    nll: np.ndarray = field(default=None)  # (T,) sums
    brier: np.ndarray = field(default=None)  # (T,) sums

    def __post_init__(self) -> None:
        k, t = self.num_classes, len(self.temperatures)
        if self.confusion is None:
            self.confusion = np.zeros((k, k), np.int64)
            self.bin_count = np.zeros((t, BINS), np.int64)
            self.bin_confidence = np.zeros((t, BINS))
            self.bin_correct = np.zeros((t, BINS))
            self.nll = np.zeros(t)
            self.brier = np.zeros(t)

    @property
    def pixels(self) -> int:
        return int(self.confusion.sum())

    def __add__(self, other: PixelScores) -> PixelScores:
        return PixelScores(
            self.num_classes,
            self.temperatures,
            self.confusion + other.confusion,
            self.bin_count + other.bin_count,
            self.bin_confidence + other.bin_confidence,
            self.bin_correct + other.bin_correct,
            self.nll + other.nll,
            self.brier + other.brier,
        )

    def update_classes(self, predicted: np.ndarray, target: np.ndarray) -> None:
        """Add pixels known by their class alone (a class map): the confusion only."""
        k = self.num_classes
        self.confusion += np.bincount(target * k + predicted, minlength=k * k).reshape(k, k)

    def update(self, logits: np.ndarray, target: np.ndarray) -> None:
        """Add pixels: ``logits (N, K)`` float, ``target (N,)`` int in ``0..K-1``."""
        k = self.num_classes
        if not len(target):
            return
        preds = logits.argmax(axis=1)
        self.confusion += np.bincount(target * k + preds, minlength=k * k).reshape(k, k)
        onehot = np.eye(k)[target]
        for i, temperature in enumerate(self.temperatures):
            scaled = logits.astype(np.float64) / temperature
            scaled -= scaled.max(axis=1, keepdims=True)
            log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
            probs = np.exp(log_probs)
            confidence = probs.max(axis=1)
            correct = (probs.argmax(axis=1) == target).astype(np.float64)
            bins = np.minimum((confidence * BINS).astype(np.int64), BINS - 1)
            self.bin_count[i] += np.bincount(bins, minlength=BINS)
            self.bin_confidence[i] += np.bincount(bins, weights=confidence, minlength=BINS)
            self.bin_correct[i] += np.bincount(bins, weights=correct, minlength=BINS)
            self.nll[i] -= log_probs[np.arange(len(target)), target].sum()
            self.brier[i] += ((probs - onehot) ** 2).sum()


def segmentation_metrics(scores: PixelScores, class_names: Sequence[str]) -> dict[str, float]:
    """mIoU, accuracy, mF1 and per-class IoU / F1 from the confusion matrix."""
    c = scores.confusion.astype(np.float64)
    tp, truth, predicted = np.diag(c), c.sum(axis=1), c.sum(axis=0)
    union = truth + predicted - tp
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    f1 = np.divide(2 * tp, truth + predicted, out=np.zeros_like(tp), where=truth + predicted > 0)
    total = c.sum()
    out = {
        "mIoU": float(iou.mean()),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "mF1": float(f1.mean()),
    }
    for name, i, f in zip(class_names, iou, f1, strict=True):
        out[f"IoU_{name}"], out[f"F1_{name}"] = float(i), float(f)
    return out


def calibration_metrics(scores: PixelScores, index: int = 0) -> dict[str, float | None]:
    """ECE, NLL (per pixel) and Brier score (per pixel) at temperature ``index``; None
    (JSON null) without a labelled pixel to score."""
    n = scores.bin_count[index].sum()
    if not n:
        return {"ECE": None, "NLL": None, "Brier": None}
    gap = np.abs(scores.bin_correct[index] - scores.bin_confidence[index]).sum()
    return {
        "ECE": float(gap / n),
        "NLL": float(scores.nll[index] / n),
        "Brier": float(scores.brier[index] / n),
    }


def reliability(scores: PixelScores, index: int = 0) -> list[dict[str, float]]:
    """Per bin: its confidence range, pixel count, mean confidence and accuracy."""
    rows = []
    for b in range(BINS):
        count = int(scores.bin_count[index, b])
        rows.append(
            {
                "low": b / BINS,
                "high": (b + 1) / BINS,
                "count": count,
                "confidence": float(scores.bin_confidence[index, b] / count) if count else None,
                "accuracy": float(scores.bin_correct[index, b] / count) if count else None,
            }
        )
    return rows


def total(groups: Iterable[PixelScores], num_classes: int, temperatures) -> PixelScores:
    out = PixelScores(num_classes, tuple(temperatures))
    for group in groups:
        out = out + group
    return out

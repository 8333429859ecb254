"""A trained model run over a split: pixel scores per chip (regions, calibration, pictures),
samples of labelled logits (calibration), and what `eofm test` adds for segmentation and
binary classification."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eofm.evaluation.scores import PixelScores


def _batches(model: Any, loader: Any):
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            logits = model.predict_batch(batch).float()
            yield batch, logits


def chip_scores(
    model: Any,
    loader: Any,
    num_classes: int,
    ignore_index: int,
    temperatures: Sequence[float] = (1.0,),
) -> dict[str, PixelScores]:
    """:class:`PixelScores` of every chip the loader yields (labelled pixels only)."""
    out: dict[str, PixelScores] = {}
    for batch, logits in _batches(model, loader):
        for i, chip in enumerate(batch["chip"]):
            target = batch["mask"][i].numpy().ravel()
            valid = target != ignore_index
            values = logits[i].reshape(num_classes, -1).numpy().T[valid]
            scores = out.setdefault(chip, PixelScores(num_classes, tuple(temperatures)))
            scores.update(values, target[valid].astype(np.int64))
    return out


def sample_logits(
    model: Any, loader: Any, num_classes: int, ignore_index: int, max_pixels: int = 400_000
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_pixels`` labelled ``(logits, target)`` pairs, drawn evenly from every
    batch (a fixed seed), for fitting a temperature."""
    rng = np.random.default_rng(0)
    logits_parts, target_parts = [], []
    for batch, logits in _batches(model, loader):
        target = batch["mask"].numpy().ravel()
        flat = logits.permute(0, 2, 3, 1).reshape(-1, num_classes).numpy()
        valid = np.flatnonzero(target != ignore_index)
        if len(valid) > max_pixels // 4:
            valid = rng.choice(valid, max_pixels // 4, replace=False)
        logits_parts.append(flat[valid])
        target_parts.append(target[valid])
    if not logits_parts:
        return np.zeros((0, num_classes), np.float32), np.zeros(0, np.int64)
    logits_all, target_all = np.concatenate(logits_parts), np.concatenate(target_parts)
    if len(target_all) > max_pixels:
        keep = rng.choice(len(target_all), max_pixels, replace=False)
        logits_all, target_all = logits_all[keep], target_all[keep]
    return logits_all, target_all.astype(np.int64)


def _role_rows(
    scores: dict[str, PixelScores], regions: dict, role: str, class_names: Sequence[str]
) -> tuple[list[dict], PixelScores | None]:
    """One row per region of ``scores``' chips, and their total."""
    from eofm.evaluation.scores import segmentation_metrics, total

    by_region: dict[str, list[str]] = {}
    for chip in scores:
        by_region.setdefault(regions.get(chip) or "(none)", []).append(chip)
    rows = []
    for region, chips in sorted(by_region.items()):
        group = total((scores[c] for c in chips), len(class_names), (1.0,))
        rows.append(
            {
                "region": region,
                "role": role,
                "chips": len(chips),
                "pixels": group.pixels,
                **segmentation_metrics(group, class_names),
            }
        )
    whole = total(scores.values(), len(class_names), (1.0,)) if scores else None
    return rows, whole


def evaluate_segmentation(
    trained: Any, datamodule: Any, out_dir: Any, *, ignore_index: int
) -> dict[str, Any]:
    """What ``eofm test`` adds to the Lightning metrics for a segmentation run: the test
    confusion matrix, calibration before and after the run's temperature, and with a
    region split the per-region table and the in-distribution vs held-out gap; with
    ``out_dir``, ``confusion.png`` and ``reliability.png`` in it."""
    from eofm.evaluation.scores import segmentation_metrics

    names = list(trained.class_names)
    k = len(names)
    temperature = float((trained.manifest.get("calibration") or {}).get("temperature", 1.0))
    temperatures = (1.0, temperature) if temperature != 1.0 else (1.0,)
    model = trained.model
    test = chip_scores(model, datamodule.test_dataloader(), k, ignore_index, temperatures)
    whole = sum(test.values(), PixelScores(k, temperatures))
    record: dict[str, Any] = {
        "confusion": {"classes": names, "truth_by_predicted": whole.confusion.tolist()},
        "calibration": calibration_section(whole, temperature),
    }
    regions = getattr(datamodule, "regions", {}) or {}
    if regions:
        rows, held_out = _role_rows(test, regions, "held-out", names)
        seen = {}
        if getattr(datamodule, "id_test", None):
            loader = datamodule._loader("id_test")
            seen = chip_scores(model, loader, k, ignore_index)
        id_rows, in_dist = _role_rows(seen, regions, "in-distribution", names)
        summary = {"held-out": segmentation_metrics(held_out, names)}
        if in_dist is not None:
            summary["in-distribution"] = segmentation_metrics(in_dist, names)
            summary["gap"] = {
                key: summary["in-distribution"][key] - summary["held-out"][key]
                for key in ("mIoU", "accuracy", "mF1")
            }
        record["regions"] = {"rows": id_rows + rows, "summary": summary}
    if out_dir is not None:
        record["pictures"] = draw_test_pictures(Path(out_dir), whole.confusion, names, whole)
    return record


def sample_scores(model: Any, loader: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(logits (N, 2), labels (N,))`` of a binary classifier over a loader: its one
    logit ``z`` as the two-class logits ``[0, z]`` (``softmax = (1 - p, p)``)."""
    logits_parts, label_parts = [], []
    for batch, logits in _batches(model, loader):
        z = logits.reshape(-1).numpy()
        logits_parts.append(np.stack([np.zeros_like(z), z], axis=1))
        label_parts.append(batch["label"].reshape(-1).numpy().astype(np.int64))
    if not logits_parts:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    return np.concatenate(logits_parts), np.concatenate(label_parts)


def evaluate_binary(
    trained: Any, datamodule: Any, out_dir: Any, *, threshold: float
) -> dict[str, Any]:
    """Confusion at the run's decision threshold and calibration of a binary classifier
    on the test split (as :func:`evaluate_segmentation` does for pixels)."""
    names = list(trained.class_names)
    temperature = trained.temperature
    temperatures = (1.0, temperature) if temperature != 1.0 else (1.0,)
    logits, labels = sample_scores(trained.model, datamodule.test_dataloader())
    scores = PixelScores(2, temperatures)
    scores.update(logits, labels)
    probability = 1.0 / (1.0 + np.exp(-logits[:, 1]))
    predicted = (probability >= threshold).astype(np.int64)
    confusion = np.bincount(labels * 2 + predicted, minlength=4).reshape(2, 2)
    record: dict[str, Any] = {
        "confusion": {
            "classes": names,
            "threshold": threshold,
            "truth_by_predicted": confusion.tolist(),
        },
        "calibration": calibration_section(scores, temperature),
    }
    if out_dir is not None:
        record["pictures"] = draw_test_pictures(Path(out_dir), confusion, names, scores)
    return record


def calibration_section(scores: PixelScores, temperature: float) -> dict[str, Any]:
    """ECE, NLL and Brier score uncalibrated and (when calibrated) at the temperature."""
    from eofm.evaluation.scores import calibration_metrics

    section = {"temperature": temperature, "uncalibrated": calibration_metrics(scores, 0)}
    if len(scores.temperatures) > 1:
        section["calibrated"] = calibration_metrics(scores, 1)
    return section


def draw_test_pictures(
    out_dir: Path, confusion: np.ndarray, names: Sequence[str], scores: PixelScores
) -> list[str]:
    """``confusion.png`` and ``reliability.png`` (with the calibrated curve if any)."""
    from eofm.evaluation import pictures
    from eofm.evaluation.scores import reliability

    pictures.confusion_matrix(confusion, names, out_dir / "confusion.png")
    curves = {"T = 1": reliability(scores, 0)}
    if len(scores.temperatures) > 1:
        curves[f"T = {scores.temperatures[1]:.2f} (calibrated)"] = reliability(scores, 1)
    pictures.reliability_diagram(curves, out_dir / "reliability.png")
    return ["confusion.png", "reliability.png"]

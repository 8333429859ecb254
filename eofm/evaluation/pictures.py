"""Pictures people would rather look at than read: training curves, confusion matrices,
reliability diagrams and map quicklooks over the input (matplotlib, no display needed).

Every function writes one PNG and returns its path; colours of classes are the same in
every picture (:data:`CLASS_COLOURS`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Class colours: class 0 (background) dark grey, class 1 water blue, then distinct hues.
CLASS_COLOURS = [
    (0.13, 0.13, 0.13),
    (0.12, 0.47, 1.0),
    (0.9, 0.31, 0.16),
    (0.24, 0.71, 0.29),
    (1.0, 0.88, 0.1),
    (0.57, 0.12, 0.71),
]
NODATA_COLOUR = (0.78, 0.78, 0.78)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, target: Path) -> Path:
    """Write the PNG under a temporary name beside ``target`` and rename it: a picture is
    complete or absent, never half written (mode 0644 like every output)."""
    from eofm.atomic import atomic_path

    target = Path(target)
    try:
        with atomic_path(target) as tmp:
            figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        _pyplot().close(figure)
    return target


def read_epoch_log(path: Path) -> dict[str, dict[int, float]]:
    """``column -> {epoch: value}`` from Lightning's ``metrics.csv`` (last value per epoch)."""
    series: dict[str, dict[int, float]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for key, value in row.items():
                if key in ("epoch", "step") or value in ("", None):
                    continue
                try:
                    series.setdefault(key, {})[epoch] = float(value)
                except ValueError:
                    continue
    return series


def training_curves(log_csv: Path, monitor: str, target: Path) -> Path:
    """``curves.png``: train and validation loss, and the monitored metric, per epoch."""
    plt = _pyplot()
    series = read_epoch_log(log_csv)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, label in (("train/loss_epoch", "train"), ("train/loss", "train"), ("val/loss", "val")):
        if key in series and not (key == "train/loss" and "train/loss_epoch" in series):
            points = sorted(series[key].items())
            left.plot([e + 1 for e, _ in points], [v for _, v in points], marker="o", label=label)
    left.set(title="loss", xlabel="epoch")
    left.legend(frameon=False)
    if monitor in series:
        points = sorted(series[monitor].items())
        right.plot([e + 1 for e, _ in points], [v for _, v in points], marker="o", color="C2")
    right.set(title=monitor, xlabel="epoch")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    return _save(figure, target)


def confusion_matrix(
    confusion: np.ndarray, class_names: Sequence[str], target: Path, title: str = "test"
) -> Path:
    """``confusion.png``: rows are the truth, shaded by the share of the row, with counts."""
    plt = _pyplot()
    counts = np.asarray(confusion, np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    k = len(class_names)
    figure, axis = plt.subplots(figsize=(1.6 + 1.1 * k, 1.2 + 1.0 * k))
    image = axis.imshow(share, vmin=0, vmax=1, cmap="Blues")
    for i in range(k):
        for j in range(k):
            axis.text(
                j,
                i,
                f"{share[i, j]:.1%}\n{int(counts[i, j]):,}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] > 0.5 else "black",
            )
    axis.set(
        xticks=range(k),
        yticks=range(k),
        xticklabels=class_names,
        yticklabels=class_names,
        xlabel="predicted",
        ylabel="truth",
        title=f"confusion ({title})",
    )
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the truth row")
    return _save(figure, target)


def reliability_diagram(curves: dict[str, list[dict]], target: Path) -> Path:
    """``reliability.png``: accuracy against confidence per bin, one curve per labelled set
    of bins (e.g. before and after temperature scaling), with the diagonal."""
    plt = _pyplot()
    figure, (axis, counts) = plt.subplots(
        2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="calibrated")
    for i, (label, bins) in enumerate(curves.items()):
        used = [b for b in bins if b["count"]]
        axis.plot(
            [b["confidence"] for b in used],
            [b["accuracy"] for b in used],
            marker="o",
            color=f"C{i}",
            label=label,
        )
        counts.bar(
            [(b["low"] + b["high"]) / 2 for b in bins],
            [b["count"] for b in bins],
            width=1 / len(bins) * (0.9 if i == 0 else 0.5),
            color=f"C{i}",
            alpha=0.6,
        )
    axis.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="reliability")
    axis.legend(frameon=False, loc="upper left")
    counts.set(xlabel="confidence (top class)", ylabel="pixels", yscale="log")
    for a in (axis, counts):
        a.grid(alpha=0.3)
    return _save(figure, target)


def stretch(values: np.ndarray) -> np.ndarray:
    """2-98 percent stretch of the finite values to 0..1 (NaN elsewhere)."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.full(values.shape, np.nan)
    low, high = np.percentile(values[finite], [2, 98])
    scaled = (values.astype(np.float64) - low) / max(high - low, 1e-12)
    return np.where(finite, np.clip(scaled, 0, 1), np.nan)


def map_quicklook(
    backdrop: np.ndarray | None,
    classes: np.ndarray | None,
    class_names: Sequence[str],
    target: Path,
    *,
    nodata: int = 255,
    probability: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """A map PNG: the classes (all but the first, semi-transparent) over the input's
    backdrop (``(3, H, W)`` RGB or ``(1, H, W)`` grey, any range), with a legend; or a
    probability map (``probability``, 0..1) with a colour bar."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    height, width = (classes if classes is not None else probability).shape
    side = 7.0
    figure, axis = plt.subplots(
        figsize=(side * min(1.0, width / height) + 1.5, side * min(1.0, height / width))
    )
    if backdrop is not None:
        shown = np.stack([stretch(b) for b in backdrop], axis=-1)
        if shown.shape[-1] == 1:
            shown = np.repeat(shown, 3, axis=-1)
        shown = np.where(np.isnan(shown), NODATA_COLOUR[0], shown)
        axis.imshow(shown, interpolation="nearest")
    handles = []
    if probability is not None:
        image = axis.imshow(probability, vmin=0, vmax=1, cmap="magma", alpha=0.85)
        figure.colorbar(image, ax=axis, fraction=0.046, label="probability")
    elif classes is not None:
        colours = [CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in range(len(class_names))]
        shown = np.ma.masked_where((classes == 0) | (classes == nodata), classes)
        if backdrop is None:  # no input to show: the background class is drawn too
            shown = np.ma.masked_where(classes == nodata, classes)
        axis.imshow(
            shown,
            cmap=ListedColormap(colours),
            vmin=-0.5,
            vmax=len(class_names) - 0.5,
            alpha=0.55 if backdrop is not None else 1.0,
            interpolation="nearest",
        )
        drawn = range(1 if backdrop is not None else 0, len(class_names))
        handles = [Patch(color=colours[i], label=class_names[i]) for i in drawn]
        if (classes == nodata).any():
            axis.imshow(
                np.ma.masked_where(classes != nodata, classes),
                cmap=ListedColormap([NODATA_COLOUR]),
                interpolation="nearest",
            )
            handles.append(Patch(color=NODATA_COLOUR, label="no data"))
    if handles:
        axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    axis.set_axis_off()
    if title:
        axis.set_title(title, fontsize=9)
    return _save(figure, target)


def downsample_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = max(1, math.ceil(max(height, width) / max_side))
    return max(1, height // scale), max(1, width // scale)

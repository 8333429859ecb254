"""Whole labelled scenes scored from class maps: the confusion of a predicted map (a
GeoTIFF that ``eofm predict`` writes) against its label raster, read strip by strip.

Pixels count where the label is not the ignore index and the map has a class (the map's
nodata marks pixels without valid input, which a chip's mask also leaves out:
:mod:`eofm.data.chips`). The metrics are :func:`eofm.evaluation.scores.segmentation_metrics`,
named as the chip-wise test logs them (``test/mIoU``, ``test/IoU_<class>``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eofm.errors import EofmError
from eofm.evaluation.scores import PixelScores, segmentation_metrics

#: Rows read at a time: memory is bounded by a strip, never by the scene.
STRIP_ROWS = 1024


def class_map_scores(
    classes: Path, label: Path, num_classes: int, ignore_index: int
) -> PixelScores:
    """The confusion of the class map ``classes`` against the label raster ``label``."""
    import rasterio
    from rasterio.windows import Window

    scores = PixelScores(num_classes)
    with rasterio.open(classes) as predicted, rasterio.open(label) as truth:
        if (predicted.height, predicted.width) != (truth.height, truth.width):
            raise EofmError(
                f"Label {label} is {truth.width}x{truth.height} px but its scene's class map "
                f"is {predicted.width}x{predicted.height} px."
            )
        nodata = predicted.nodata
        for top in range(0, truth.height, STRIP_ROWS):
            window = Window(0, top, truth.width, min(STRIP_ROWS, truth.height - top))
            target = truth.read(1, window=window).astype(np.int64).ravel()
            values = predicted.read(1, window=window).astype(np.int64).ravel()
            scored = target != ignore_index
            if nodata is not None:
                scored &= values != int(nodata)
            target, values = target[scored], values[scored]
            outside = target[(target < 0) | (target >= num_classes)]
            if outside.size:
                raise EofmError(
                    f"Label {label} holds the value {int(outside[0])}, outside the "
                    f"{num_classes} classes 0..{num_classes - 1} and not the ignore index "
                    f"{ignore_index} (task.ignore_index)."
                )
            scores.update_classes(values, target)
    return scores


def scene_metrics(scores: PixelScores, class_names: Sequence[str], stage: str = "test") -> dict:
    """``stage/``-prefixed metrics of a confusion, as the chip-wise test names them."""
    return {f"{stage}/{k}": v for k, v in segmentation_metrics(scores, class_names).items()}

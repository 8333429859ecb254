"""The tile grid of a scene: window offsets, column bands and the blending window.

Blending overlapping tile predictions with smooth weights follows the common practice of
window-weighted stitching (e.g. Huang et al., "Large-scale semantic classification:
outcome of the first year of Inria aerial image labeling benchmark", IGARSS 2018).
"""

from __future__ import annotations

import numpy as np

#: Scenes are processed in column bands this wide, so memory depends on neither dimension.
COLUMN_BAND = 8192


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window offsets covering ``length``; the last window is flush with the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def column_bands(
    width: int, tile: int, stride: int, band_width: int | None = None
) -> list[tuple[tuple[int, int], list[int]]]:
    """``((x0, x1), tile columns)`` per column band: the global tiles that touch it."""
    band_width = band_width or COLUMN_BAND
    cols = tile_starts(width, tile, stride)
    bands = []
    for x0 in range(0, width, band_width):
        x1 = min(width, x0 + band_width)
        bands.append(((x0, x1), [c for c in cols if c < x1 and c + tile > x0]))
    return bands


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    """Tiles predicted for a scene (those straddling column bands count twice)."""
    stride = tile - overlap
    rows = len(tile_starts(height, tile, stride))
    return rows * sum(len(cols) for _, cols in column_bands(width, tile, stride))


def blend_weights(tile: int) -> np.ndarray:
    """A separable sine-squared window, strictly positive so every pixel gets weight."""
    ramp = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    ramp = np.maximum(ramp, 1e-3)
    return np.outer(ramp, ramp).astype(np.float32)

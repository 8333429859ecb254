"""Blending weighted tile probabilities into finished rows, one column band at a time.

The buffers hold one strip of tiles (``tile`` rows) across the band, never the scene.
Per pixel, the weighted probabilities are summed in tile order (strip by strip, left to
right) into zeroed buffers, exactly as a whole-scene accumulator would sum them, so the
result is the same to the bit. The window is separable (``grid.blend_weights``), so the
sum of the weights that covers a pixel is the product of a row sum and a column sum,
computed from the grid rather than accumulated tile by tile.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Finished rows are normalised and made into products this many bytes at a time.
CHUNK_BYTES = 1 << 20

Finisher = Callable[[np.ndarray, np.ndarray, int, int], None]


def first_argmax(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``values.argmax(axis=0)`` as uint8 (into ``out`` when given): the first index on
    ties, and NaN never wins. Two classes, the common case, take one comparison instead
    of numpy's strided reduction over the class axis."""
    index = np.empty(values.shape[1:], np.uint8) if out is None else out
    if values.shape[0] == 2:
        np.greater(values[1], values[0], out=index.view(bool))
    else:
        index[...] = np.nan_to_num(values, nan=-np.inf).argmax(axis=0)
    return index


class BandBlender:
    """Accumulates the tiles of one column band and hands out finished blocks of rows.

    ``rows`` are the scene's tile rows, ``cols`` the tile columns touching the band
    ``span = (x0, x1)``; tiles must arrive strip by strip, left to right.
    """

    def __init__(
        self,
        *,
        rows: list[int],
        cols: list[int],
        span: tuple[int, int],
        tile: int,
        height: int,
        width: int,
        num_classes: int,
        weights: np.ndarray,
    ) -> None:
        self.rows, self.cols, self.tile = rows, cols, tile
        self.height, self.width = height, width
        self.left = cols[0]
        self.inner = slice(span[0] - self.left, span[1] - self.left)
        band_width = min(width, cols[-1] + tile) - self.left
        rows_held = min(tile, height)
        self.acc = np.zeros((num_classes, rows_held, band_width), np.float32)
        middle = tile // 2  # weights = outer(ramp, ramp): one row and one column of it
        self.row_ramp = weights[:, middle].astype(np.float64)
        self.col_sum = np.zeros(band_width, np.float64)
        for c in cols:  # the weight every pixel of a column gets from the tiles over it
            w = min(tile, width - c)
            self.col_sum[c - self.left : c - self.left + w] += weights[middle, :w]
        self.col_sum /= weights[middle, middle]
        self._inverse_cols = (1.0 / np.maximum(self.col_sum[self.inner], 1e-12)).astype(np.float32)
        self.valid = np.zeros((rows_held, band_width), bool)
        self.top = 0  # scene row held in the buffers' first row
        self.touched = 0  # scene rows < touched hold contributions
        self._next_strip = 0  # index into rows of the next strip to complete
        chunk_rows = max(1, CHUNK_BYTES // (4 * num_classes * band_width))
        self._chunk = np.empty((num_classes, min(chunk_rows, rows_held), band_width), np.float32)
        self.any_valid = False

    def add(self, position: tuple[int, int], weighted: np.ndarray) -> None:
        """Add one tile's weighted probabilities ``(K, tile, tile)``."""
        r, c = position
        t = self.tile
        h, w = min(t, self.height - r), min(t, self.width - c)
        self.touched = max(self.touched, r + h)
        y, x = r - self.top, c - self.left
        self.acc[:, y : y + h, x : x + w] += weighted[:, :h, :w]

    def add_valid(self, row: int, mask: np.ndarray) -> None:
        """Mark the valid pixels of strip ``row`` (its ``(tile, W)`` mask from the band's
        left edge): the union of its tiles' masks, since they cover the band."""
        h = min(self.tile, self.height - row)
        y, width = row - self.top, self.valid.shape[1]
        self.valid[y : y + h] |= mask[:h, :width]

    def end_strip(self, row: int, finish: Finisher) -> tuple[int, int] | None:
        """Strip ``row`` is complete: hand the rows now final, if any, to ``finish`` and
        return ``(scene row, rows)`` of them.

        ``finish(channels, valid, first, total)`` gets the blended channels ``(C, m, w)``
        float32 and the validity ``(m, w)`` of ``m`` rows from row ``first`` of the
        ``total`` rows, over the band's own columns, a few rows at a time: each chunk is
        normalised and turned into products while it is still in cache. ``channels`` is a
        scratch buffer, overwritten by the next chunk."""
        if self.rows[self._next_strip] != row:
            raise ValueError(f"strip {row} completed out of order")
        self._next_strip += 1
        done_until = (
            self.rows[self._next_strip] if self._next_strip < len(self.rows) else self.height
        )
        n = done_until - self.top
        if n <= 0:
            return None
        top, inner = self.top, self.inner
        valid = self.valid[:n, inner]
        self.any_valid |= bool(valid.any())
        inverse_rows = (1.0 / np.maximum(self._row_sum(n), 1e-12)).astype(np.float32)[:, None]
        step = self._chunk.shape[1]
        for first in range(0, n, step):
            rows = slice(first, min(n, first + step))
            channels = self._chunk[:, : rows.stop - first, : len(self._inverse_cols)]
            np.multiply(self.acc[:, rows, inner], inverse_rows[rows], out=channels)
            channels *= self._inverse_cols
            finish(channels, valid[rows], first, n)
        keep = max(0, self.touched - done_until)  # rows later strips add to
        for held in (self.acc[:], self.valid[None]):
            held[:, :keep] = held[:, n : n + keep]
            held[:, keep:] = 0
        self.top = done_until
        return top, n

    def _row_sum(self, n: int) -> np.ndarray:
        """The weight each of the ``n`` rows from ``top`` gets from the tile rows over it."""
        total = np.zeros(n, np.float64)
        for r in self.rows:
            first, last = max(r, self.top), min(r + self.tile, self.height, self.top + n)
            if first < last:
                total[first - self.top : last - self.top] += self.row_ramp[first - r : last - r]
        return total

"""Blending weighted tile probabilities into finished rows, one column band at a time.

The buffers hold one strip of tiles (``tile`` rows) across the band, never the scene.
Per pixel, the sums are formed in tile order (strip by strip, left to right), exactly
as a whole-scene accumulator would form them, so the result is the same to the bit:

- a pixel's first contribution is assigned rather than added to zero (the same value,
  since weighted probabilities are never negative), so the buffers are not cleared;
- the weight sums depend only on the tile grid, so they are computed once for each
  distinct layout of strips over a block of rows (every interior strip shares one) and
  reused, instead of being accumulated tile by tile.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Finished rows are normalised and made into products this many bytes at a time.
CHUNK_BYTES = 1 << 20

Finisher = Callable[[np.ndarray, np.ndarray, int, int], None]


def first_argmax(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``values.argmax(axis=0)`` as uint8 (into ``out`` when given): the first index on
    ties, and NaN never wins.

    Plane-by-plane comparisons instead of numpy's strided reduction over classes, with
    branch-free updates (a multiply-add on the uint8 index); the running maximum takes
    ``np.maximum`` unless a NaN is present, where it would differ.
    """
    index = np.empty(values.shape[1:], np.uint8) if out is None else out
    if values.shape[0] == 1:
        index[...] = 0
        return index
    np.greater(values[1], values[0], out=index.view(bool))
    if values.shape[0] == 2:
        return index
    has_nan = bool(np.isnan(values).any())
    best = np.where(index, values[1], values[0]) if has_nan else np.maximum(values[0], values[1])
    for c in range(2, values.shape[0]):
        better = (values[c] > best).view(np.uint8)
        index += better * (np.uint8(c) - index)  # c where better, else unchanged (mod 256)
        if c + 1 < values.shape[0]:
            best = np.where(better, values[c], best) if has_nan else np.maximum(best, values[c])
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
        self.weights = weights
        self.left = cols[0]
        self.inner = slice(span[0] - self.left, span[1] - self.left)
        band_width = min(width, cols[-1] + tile) - self.left
        rows_held = min(tile, height)
        self.acc = np.empty((num_classes, rows_held, band_width), np.float32)
        self.valid = np.zeros((rows_held, band_width), bool)
        self.top = 0  # scene row held in the buffers' first row
        self.touched = 0  # scene rows < touched hold contributions (of earlier strips)
        self._strip: int | None = None
        self._touched_before = 0  # `touched` when the current strip began
        self._fresh_until = 0  # band column up to which the current strip's fresh rows are set
        self._next_strip = 0  # index into rows of the next strip to complete
        self._normalisers: dict[tuple, np.ndarray] = {}
        chunk_rows = max(1, CHUNK_BYTES // (4 * num_classes * band_width))
        self._chunk = np.empty((num_classes, min(chunk_rows, rows_held), band_width), np.float32)
        self.any_valid = False

    def add(self, position: tuple[int, int], weighted: np.ndarray) -> None:
        """Add one tile's weighted probabilities ``(K, tile, tile)``."""
        r, c = position
        t = self.tile
        h, w = min(t, self.height - r), min(t, self.width - c)
        if r != self._strip:
            self._strip, self._touched_before, self._fresh_until = r, self.touched, 0
            self.touched = max(self.touched, r + h)
        y, x = r - self.top, c - self.left
        old = min(h, max(0, self._touched_before - r))  # rows an earlier strip reached
        if old:
            self.acc[:, y : y + old, x : x + w] += weighted[:, :old, :w]
        if old < h:
            fresh = slice(y + old, y + h)
            split = min(w, max(0, self._fresh_until - x))  # columns of this strip's last tile
            if split:
                self.acc[:, fresh, x : x + split] += weighted[:, old:h, :split]
            self.acc[:, fresh, x + split : x + w] = weighted[:, old:h, split:w]
            self._fresh_until = max(self._fresh_until, x + w)

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
        normaliser = self._normaliser(top, done_until)[:, inner]
        step = self._chunk.shape[1]
        for first in range(0, n, step):
            rows = slice(first, min(n, first + step))
            channels = self._chunk[:, : rows.stop - first, : normaliser.shape[1]]
            np.divide(self.acc[:, rows, inner], normaliser[rows], out=channels)
            finish(channels, valid[rows], first, n)
        keep = max(0, self.touched - done_until)  # rows later strips add to
        self.acc[:, :keep] = self.acc[:, n : n + keep]
        self.valid[:keep] = self.valid[n : n + keep]
        self.valid[keep:] = False
        self.top = done_until
        return top, n

    def _normaliser(self, top: int, bottom: int) -> np.ndarray:
        """``max(weight sum, 1e-12)`` of rows ``top .. bottom``, summed in tile order."""
        t = self.tile
        strips = [(r, min(t, self.height - r)) for r in self.rows if r < bottom and r + t > top]
        key = (tuple((r - top, h) for r, h in strips), bottom - top)
        cached = self._normalisers.get(key)
        if cached is not None:
            return cached
        wsum = np.zeros((bottom - top, self.acc.shape[-1]), np.float32)
        for r, h in strips:
            a, b = max(r, top), min(r + h, bottom)
            ramp = self.weights[a - r : b - r]
            for c in self.cols:
                x, w = c - self.left, min(t, self.width - c)
                wsum[a - top : b - top, x : x + w] += ramp[:, :w]
        self._normalisers[key] = normaliser = np.maximum(wsum, 1e-12, out=wsum)
        return normaliser

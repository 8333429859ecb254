"""Block-wise reads of a ``(time, y, x)`` datacube, so memory is bounded whatever its size.

A continental cube (Mesogeos: 6,000 days on a 1,253 x 983 grid, about 1.4 TB) cannot be
read whole. Everything the fire-danger pipeline needs from it comes through here:

- :meth:`CubeReader.events`: the ``(day, y, x)`` of every target event, scanned a block of
  days at a time;
- :meth:`CubeReader.windows`: the dynamic history and static window of any set of samples,
  read per spatial tile and block of days (only the chunks that hold samples), gathered
  in the samples' order.

Each read holds at most about ``budget_bytes`` of the cube.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Bytes of the cube one read may hold.
BUDGET_BYTES = 256 << 20
#: Pixels per side of the spatial tiles windows are gathered in.
TILE = 256


class CubeReader:
    """Reads events and sample windows of one cube, block by block."""

    def __init__(
        self,
        cube: Any,
        dynamic_vars: Sequence[str],
        static_vars: Sequence[str],
        *,
        budget_bytes: int | None = None,
        tile: int | None = None,
    ) -> None:
        self.cube = cube
        self.dynamic_vars, self.static_vars = list(dynamic_vars), list(static_vars)
        self.budget, self.tile = budget_bytes or BUDGET_BYTES, tile or TILE
        self.days = int(cube.sizes["time"])
        self.height, self.width = int(cube.sizes["y"]), int(cube.sizes["x"])

    def _days_per_read(self, bytes_per_day: int) -> int:
        return max(1, self.budget // max(1, bytes_per_day))

    def events(self, target: str, threshold: float) -> np.ndarray:
        """``(N, 3)`` int ``(day, y, x)`` where ``target`` exceeds ``threshold`` (NaN is not)."""
        block = self._days_per_read(self.height * self.width * 4)
        found = []
        for start in range(0, self.days, block):
            values = self.cube[target].isel(time=slice(start, start + block)).values
            hits = np.argwhere(np.nan_to_num(values.astype(np.float32)) > threshold)
            hits[:, 0] += start
            found.append(hits)
        return np.concatenate(found) if found else np.zeros((0, 3), np.int64)

    def windows(self, rows: np.ndarray, lag: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw windows of samples ``rows = (label day, y, x)``: the dynamic variables of the
        ``lag`` days before the label day ``(N, L, Cd, p, p)`` and the static ones
        ``(N, Cs, p, p)``, float32, in the order of ``rows``."""
        n, r = len(rows), patch // 2
        cd, cs = len(self.dynamic_vars), len(self.static_vars)
        dynamic = np.empty((n, lag, cd, patch, patch), np.float32)
        static = np.empty((n, cs, patch, patch), np.float32)
        side = self.tile + 2 * r
        block = max(1, self._days_per_read(cd * side * side * 4) - lag)
        offsets = np.arange(patch) - r
        tiles = (rows[:, 1] // self.tile) * (self.width // self.tile + 1) + rows[:, 2] // self.tile
        for key in np.unique(tiles):
            in_tile = np.flatnonzero(tiles == key)
            y0, y1 = rows[in_tile, 1].min() - r, rows[in_tile, 1].max() + r + 1
            x0, x1 = rows[in_tile, 2].min() - r, rows[in_tile, 2].max() + r + 1
            area = {"y": slice(int(y0), int(y1)), "x": slice(int(x0), int(x1))}
            ys = rows[in_tile, 1, None] - y0 + offsets  # (k, p) within the area
            xs = rows[in_tile, 2, None] - x0 + offsets
            if cs:
                stat = np.stack([self._read(v, area) for v in self.static_vars])
                static[in_tile] = stat[:, ys[:, :, None], xs[:, None, :]].transpose(1, 0, 2, 3)
            blocks = rows[in_tile, 0] // block
            for b in np.unique(blocks):
                chosen = in_tile[blocks == b]
                first = int(rows[chosen, 0].min()) - lag  # t-L+1 .. t, t = label day - 1
                last = int(rows[chosen, 0].max())
                days = {"time": slice(first, last)}
                cube = np.stack([self._read(v, area | days) for v in self.dynamic_vars], 1)
                day = rows[chosen, 0, None] - lag + np.arange(lag) - first  # (k, L)
                cy = ys[np.searchsorted(in_tile, chosen)]
                cx = xs[np.searchsorted(in_tile, chosen)]
                picked = cube[day[:, :, None, None], :, cy[:, None, :, None], cx[:, None, None, :]]
                dynamic[chosen] = picked.transpose(0, 1, 4, 2, 3)
        return dynamic, static

    def _read(self, name: str, where: dict[str, slice]) -> np.ndarray:
        array = self.cube[name]
        return array.isel({k: v for k, v in where.items() if k in array.dims}).values.astype(
            np.float32
        )

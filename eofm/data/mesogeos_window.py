"""One window of the whole Mesogeos grid for a danger map: each day-chunk decoded once.

The release stores each daily layer as one whole-grid chunk per day ``(1, 1752, 4714)``
(``eofm/data/mesogeos_cube.py``), so any read of a few grid rows decodes the whole day.
A map cannot hold its window whole either: 12 dynamic layers x 30 days of that grid are
11.9 GB of float32. :class:`GridWindow` therefore decodes every ``(layer, day)`` chunk of
the window exactly once, one day at a time, and stages it re-chunked in bands of grid
rows (a zarr group: in memory when the window fits a quarter of the read budget, else in
a temporary directory, LZ4-compressed, removed on exit); the map then takes its pixels one
band at a time (:meth:`GridWindow.band`), each band sized to another quarter. The other
half of the budget is left to the interpreter, torch (about 0.75 GB) and the model's
batches, so that the process's peak resident memory stays within the budget.
This is the rechunking pattern of the ``rechunker`` package (Pangeo), on zarr's public API.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from eofm.data.mesogeos_cube import MesogeosCube

#: The layer whose NaN marks the sea on the window's last day (Track A keeps no sample there).
LAND_LAYER = "t2m"


def band_rows(cube: MesogeosCube, lag: int, channels: int) -> int:
    """Grid rows per band: the band's windows (``channels`` layers), one layer's staged
    read of the band and its pixel selection fit in a quarter of the read budget."""
    per_row = cube.width * lag * (max(1, channels) + 2) * 4
    return max(1, min(cube.height, (cube.budget // 4) // per_row))


class GridWindow:
    """The days ``t-lag+1 .. t`` of the dynamic layers and day t's static layers, staged."""

    def __init__(
        self,
        cube: MesogeosCube,
        group: Any,
        t: int,
        lag: int,
        dynamic: Sequence[str],
        static: Sequence[str],
    ) -> None:
        self.cube, self.group, self.t, self.lag = cube, group, t, lag
        self.dynamic, self.static = list(dynamic), list(static)
        self.rows = band_rows(cube, lag, len(self.dynamic))
        self.land = np.zeros((cube.height, cube.width), bool)

    def stage(self) -> None:
        import zarr

        cube, first = self.cube, self.t - self.lag + 1
        codec = zarr.codecs.BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")
        chunk = (self.rows, cube.width)
        grid = (cube.height, cube.width)
        for name in self.dynamic:
            staged = self.group.create_array(
                name, shape=(self.lag, *grid), chunks=(1, *chunk), dtype="float32",
                compressors=codec, fill_value=np.nan,
            )  # fmt: skip
            for step in range(self.lag):
                day = cube.days(name, first + step, first + step + 1)[0]
                if name == LAND_LAYER and step == self.lag - 1:
                    self.land = np.isfinite(day)
                staged[step] = day
        if LAND_LAYER not in self.dynamic:
            self.land = np.isfinite(cube.days(LAND_LAYER, self.t, self.t + 1)[0])
        for name in self.static:
            staged = self.group.create_array(
                name, shape=grid, chunks=chunk, dtype="float32", compressors=codec,
                fill_value=np.nan,
            )  # fmt: skip
            staged[:] = cube.static(name, self.t)

    def bands(self) -> Iterator[slice]:
        """The bands of grid rows, aligned on the staged chunks."""
        for top in range(0, self.cube.height, self.rows):
            yield slice(top, min(top + self.rows, self.cube.height))

    def band(self, rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The land pixels of grid rows ``rows``: their flat mask over the band, dynamic
        ``(P, lag, Cd)`` and static ``(P, Cs)`` float32."""
        keep = self.land[rows].ravel()
        count, pixels = keep.size, int(keep.sum())
        out_d = np.empty((pixels, self.lag, len(self.dynamic)), np.float32)
        for c, name in enumerate(self.dynamic):
            out_d[:, :, c] = self.group[name][:, rows].reshape(self.lag, count)[:, keep].T
        out_s = np.empty((pixels, len(self.static)), np.float32)
        for c, name in enumerate(self.static):
            out_s[:, c] = self.group[name][rows].ravel()[keep]
        return keep, out_d, out_s


@contextmanager
def grid_window(
    cube: MesogeosCube, t: int, lag: int, dynamic: Sequence[str], static: Sequence[str]
) -> Iterator[GridWindow]:
    """The staged window ending on cube day ``t``; its temporary store is removed on exit,
    whatever happens."""
    import zarr

    layers = len(dynamic) * lag + len(static)
    in_memory = layers * cube.height * cube.width * 4 <= cube.budget // 4
    with tempfile.TemporaryDirectory(prefix="eofm-danger-window-") as folder:
        store = zarr.storage.MemoryStore() if in_memory else zarr.storage.LocalStore(folder)
        window = GridWindow(cube, zarr.open_group(store, mode="w"), t, lag, dynamic, static)
        window.stage()
        yield window

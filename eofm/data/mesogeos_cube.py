"""The Mesogeos datacube as the release writes it, read one whole day-chunk at a time.

Kondylatos et al., "Mesogeos: A multi-purpose dataset for data-driven wildfire modeling in
the Mediterranean", NeurIPS 2023 Datasets & Benchmarks. Facts from Orion-AI-Lab/mesogeos
(``datacube_creation/src/cube.py``, ``datacube_creation/run.py``,
``notebooks/1_Exploring_Mesogeos.ipynb``, ``ml_tracks/a.fire_danger/dataset-extraction``):

- a zarr store with dims ``(time, y, x)``: 6026 days (2006-04-01 .. 2022-09-29) on a
  1752 x 4714 grid, ``x`` ascending longitude, ``y`` descending latitude, EPSG:4326 (a
  ``spatial_ref`` variable written by rioxarray); 30 float32 layers, each daily layer
  chunked one whole grid per day ``(1, 1752, 4714)``;
- only ``dem, slope, aspect, curvature, roads_distance`` are ``(y, x)``; ``population`` and
  the eight ``lc_*`` fractions are ``(time, y, x)`` holding their value on 1 January of
  each year (and on the cube's first day, 2006-04-01) and NaN on every other day. The
  sample notebooks take, for a window ending on day t, the value of t's year (the first
  day's in 2006): here, the value of the last such day at or before t (:meth:`annual_day`);
- the day offset (:data:`IGNITION_OFFSET_DAYS`): ``sample_positives.ipynb`` subtracts one
  day from each fire's ``IGNITION_D``; ``ignition_points[t]`` holds the hectares of the
  fires that *ignite on day t+1*, and ``burned_areas[t]`` their final perimeters. A window
  ``t-29 .. t`` forecasts the fires of day t+1. :func:`cube_day_of_fire` and
  :func:`fire_day_of_cube_day` are the only conversions.

Reads are chunk-aware: every read takes whole days of a layer (:meth:`MesogeosCube.days`),
each day-chunk the samples need is read once per call of :meth:`MesogeosCube.gather`, and
one read holds at most ``budget_bytes``; a danger map decodes each day-chunk of its window
once (:mod:`eofm.data.mesogeos_window`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eofm.errors import EofmError

#: ``ignition_points[t]`` records the fires igniting on day ``t + IGNITION_OFFSET_DAYS``.
IGNITION_OFFSET_DAYS = 1
#: The land-cover fractions, in the order ``sample_negatives.ipynb`` stacks them.
LANDCOVER = [
    "lc_agriculture", "lc_forest", "lc_grassland", "lc_settlement", "lc_shrubland",
    "lc_sparse_vegetation", "lc_water_bodies", "lc_wetland",
]  # fmt: skip
#: Layers the release stores once a year on a daily axis.
ANNUAL = ["population", *LANDCOVER]


def fire_day_of_cube_day(day: np.datetime64) -> np.datetime64:
    """The day whose fires a window ending on cube day ``day`` forecasts."""
    return np.datetime64(day, "D") + np.timedelta64(IGNITION_OFFSET_DAYS, "D")


def cube_day_of_fire(day: np.datetime64) -> np.datetime64:
    """The cube day on which fires igniting on ``day`` are recorded."""
    return np.datetime64(day, "D") - np.timedelta64(IGNITION_OFFSET_DAYS, "D")


def open_mesogeos(root: Path) -> Any:
    import xarray as xr

    root = Path(root)
    if not root.exists():
        raise EofmError(f"data.root {root} does not exist.")
    try:
        return xr.open_zarr(root, chunks=None) if root.is_dir() else xr.open_dataset(root)
    except Exception as exc:
        raise EofmError(f"Cannot open the datacube {root}: {exc}") from None


class MesogeosCube:
    """One cube: our variable names mapped to its own, its days, and whole-day reads."""

    def __init__(
        self,
        root: Path,
        variables: dict[str, str] | None = None,
        budget_bytes: int = 512 << 20,
        ds: Any = None,
    ) -> None:
        self.root = Path(root)
        self.ds = ds if ds is not None else open_mesogeos(self.root)
        self.names = dict(variables or {})
        self.budget = int(budget_bytes)
        for dim in ("time", "y", "x"):
            if dim not in self.ds.sizes:
                raise EofmError(f"The datacube {self.root} has no '{dim}' dimension.")
        self.times = self.ds["time"].values.astype("datetime64[D]")
        self.height, self.width = int(self.ds.sizes["y"]), int(self.ds.sizes["x"])
        years = self.times.astype("datetime64[Y]")
        first_of_year = self.times == years.astype("datetime64[D]")
        first_of_year[0] = True
        #: the cube days holding the annual layers' values
        self.annual_days = np.flatnonzero(first_of_year)

    # --- names and checks ----------------------------------------------------------------
    def name(self, ours: str) -> str:
        return self.names.get(ours, ours)

    def layer(self, ours: str) -> Any:
        return self.ds[self.name(ours)]

    def require(self, names: Sequence[str], role: str) -> None:
        """Every layer exists with the release's dims; one error naming the first that
        does not."""
        for ours in names:
            theirs = self.name(ours)
            if theirs not in self.ds:
                mapped = f" (mapped to '{theirs}' by data.variables)" if theirs != ours else ""
                raise EofmError(
                    f"The datacube {self.root} has no variable '{ours}'{mapped}, a {role} of "
                    "Track A; map the cube's name with data.variables or change the input list."
                )
            dims = self.ds[theirs].dims
            if dims not in (("time", "y", "x"), ("y", "x")):
                raise EofmError(
                    f"{theirs} in {self.root} has dims {dims}, expected (time, y, x) or (y, x)."
                )

    def is_daily(self, ours: str) -> bool:
        return "time" in self.layer(ours).dims

    # --- days ---------------------------------------------------------------------------
    def day_index(self, day: np.datetime64) -> int | None:
        found = np.flatnonzero(self.times == np.datetime64(day, "D"))
        return int(found[0]) if len(found) else None

    def annual_day(self, days: np.ndarray) -> np.ndarray:
        """The cube day holding the annual value for each of ``days``: the last 1 January
        (or the cube's first day) at or before it."""
        where = np.searchsorted(self.annual_days, np.asarray(days), side="right") - 1
        return self.annual_days[np.maximum(where, 0)]

    def days_per_read(self, rows: int | None = None) -> int:
        per_day = (rows or self.height) * self.width * 4
        return max(1, self.budget // max(1, per_day))

    def days(self, ours: str, first: int, stop: int, rows: slice | None = None) -> np.ndarray:
        """``(stop - first, H, W)`` float32 of a daily layer (whole chunks: all columns)."""
        where: dict[str, Any] = {"time": slice(first, stop)}
        if rows is not None:
            where["y"] = rows
        return np.asarray(self.layer(ours).isel(where).values, np.float32)

    def static(self, ours: str, day: int | None = None, rows: slice | None = None) -> np.ndarray:
        """``(H, W)`` float32 of a static layer; an annual layer at cube day ``day``'s value.
        An annual value that is NaN everywhere is refused, naming the layer and the day."""
        array = self.layer(ours)
        where: dict[str, Any] = {} if rows is None else {"y": rows}
        if "time" not in array.dims:
            return np.asarray(array.isel(where).values, np.float32)
        held = int(self.annual_day(np.array([day if day is not None else len(self.times) - 1]))[0])
        values = np.asarray(array.isel(where | {"time": held}).values, np.float32)
        if rows is None and not np.isfinite(values).any():
            raise EofmError(
                f"{self.name(ours)} in {self.root} is NaN everywhere on {self.times[held]}, the "
                "day that holds its annual value (the release stores population and lc_* on "
                "1 January of each year and on the cube's first day)."
            )
        return values

    # --- chunk-aware gathering ----------------------------------------------------------
    def gather(
        self, rows: np.ndarray, lag: int, dynamic: Sequence[str], static: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Windows of samples ``rows = (t, y, x)``: dynamic ``(N, lag, Cd)`` of days
        ``t-lag+1 .. t`` and static ``(N, Cs)`` (annual layers at t's annual value).

        Needed days are read in runs of consecutive days, a budget's worth at a time, each
        day-chunk of each layer once, and every sample needing that day is served from it.
        """
        rows = np.asarray(rows, np.int64)
        n = len(rows)
        out_d = np.empty((n, lag, len(dynamic)), np.float32)
        out_s = np.empty((n, len(static)), np.float32)
        if not n:
            return out_d, out_s
        wanted = (rows[:, 0, None] - lag + 1 + np.arange(lag)).ravel()  # (n * lag,)
        order = np.argsort(wanted, kind="stable")
        sorted_days = wanted[order]
        for first, stop in self._runs(np.unique(sorted_days), self.days_per_read()):
            lo, hi = np.searchsorted(sorted_days, [first, stop])
            entries = order[lo:hi]
            sample, step = entries // lag, entries % lag
            day = wanted[entries] - first
            for c, name in enumerate(dynamic):
                block = self.days(name, first, stop)
                out_d[sample, step, c] = block[day, rows[sample, 1], rows[sample, 2]]
        held = self.annual_day(rows[:, 0])
        for c, name in enumerate(static):
            if not self.is_daily(name):
                out_s[:, c] = self.static(name)[rows[:, 1], rows[:, 2]]
                continue
            for day in np.unique(held):
                chosen = held == day
                layer = self.static(name, int(day))
                out_s[chosen, c] = layer[rows[chosen, 1], rows[chosen, 2]]
        return out_d, out_s

    @staticmethod
    def _runs(days: np.ndarray, most: int) -> list[tuple[int, int]]:
        """``[first, stop)`` runs of consecutive days, each at most ``most`` long."""
        runs: list[tuple[int, int]] = []
        start = prev = int(days[0])
        for day in days[1:].tolist():
            if day != prev + 1 or day - start >= most:
                runs.append((start, prev + 1))
                start = day
            prev = day
        runs.append((start, prev + 1))
        return runs

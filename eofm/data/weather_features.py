"""A weather model's view of each day, as extra dynamic inputs of datacube samples.

Fire-danger heads can take, besides the cube's own variables, what a trained weather run
makes of the same day (issue 12, after the hydrology path): its decoded variables (e.g.
the fire-weather indices of ``era5_aurora_fire_weather_decoder``) or the surface level
of its backbone's latent. For a cube day D the run's step is the one whose target time is
nearest to D 12:00 UTC within D; its grid is sampled at each cube pixel's nearest cell.
The features become dynamic variables named ``weather:<name>`` (standardised like the
others on the training samples).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eofm.errors import EofmError

KINDS = ("outputs", "latent")


class WeatherFeatures:
    """Daily feature grids of a :class:`eofm.forecasts.weather.WeatherRun`, at cube pixels."""

    def __init__(self, run: Any, kind: str, where: str) -> None:
        if kind not in KINDS:
            raise EofmError(f"data.weather_features must be one of {KINDS}, got {kind!r}.")
        self.run, self.kind, self.where = run, kind, where
        self.lat, self.lon = run.grid(latent=kind == "latent")
        steps = run.usable_steps()
        self._targets = np.array([run.target_time(i) for i in steps], dtype="datetime64[m]")
        self._steps = np.array(steps)
        self._grids: dict[int, np.ndarray] = {}  # a step's grid, computed once
        if kind == "outputs":
            self._names = list(run.names)
        else:
            self._names = [f"latent_{k}" for k in range(run.latent_dim)]

    @property
    def names(self) -> list[str]:
        """Feature names (``weather:<variable>`` or ``weather:latent_<k>``)."""
        return [f"weather:{n}" for n in self._names]

    def step_for(self, day: np.datetime64) -> int:
        """The run's 'now' step for cube day ``day`` (target time nearest its 12:00 UTC)."""
        noon = np.datetime64(day, "D").astype("datetime64[m]") + np.timedelta64(12 * 60, "m")
        same_day = self._targets.astype("datetime64[D]") == np.datetime64(day, "D")
        if not same_day.any():
            raise EofmError(
                f"{self.where} has no time step whose prediction falls on {day} (needed for "
                "the weather features of the cube's samples)."
            )
        candidates = np.flatnonzero(same_day)
        best = candidates[np.argmin(np.abs((self._targets[candidates] - noon).astype(np.int64)))]
        return int(self._steps[best])

    def daily(self, days: np.ndarray) -> np.ndarray:
        """``(len(days), F, H, W)`` float32 feature grids of the given cube days (each
        step's grid is computed once, however many splits or map blocks ask for it)."""
        steps = [self.step_for(d) for d in days]
        todo = sorted(set(steps) - set(self._grids))
        produce = self.run.outputs if self.kind == "outputs" else self.run.latents
        for step, grid in produce(todo):
            self._grids[step] = grid.astype(np.float32)
        return np.stack([self._grids[s] for s in steps])

    def cell_index(self, cube_y: np.ndarray, cube_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest grid row of each cube latitude and column of each cube longitude; the cube
        must lie within the grid (half a cell of margin)."""
        rows = _nearest(self.lat, cube_y, "latitude", self.where)
        east = (cube_x + 180.0) % 360.0 - 180.0
        lon = (self.lon + 180.0) % 360.0 - 180.0
        cols = _nearest(lon, east, "longitude", self.where)
        return rows, cols


def _nearest(grid: np.ndarray, values: np.ndarray, axis: str, where: str) -> np.ndarray:
    spacing = float(np.abs(np.diff(grid)).max()) if len(grid) > 1 else 1.0
    gap = np.abs(values[:, None] - grid[None, :])
    index = gap.argmin(axis=1)
    outside = gap[np.arange(len(values)), index] > spacing / 2 + 1e-9
    if outside.any():
        raise EofmError(
            f"The cube's {axis}s {values[outside].min():g} .. {values[outside].max():g} lie "
            f"outside the grid of {where} ({grid.min():g} .. {grid.max():g})."
        )
    return index


def gather(
    features: np.ndarray,
    day_index: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    samples: np.ndarray,
    patch: int,
) -> np.ndarray:
    """``(N, L, F, p, p)`` features of samples ``(label day, y, x)``: ``features`` are the
    grids of some days ``(U, F, H, W)``, ``day_index (N, L)`` picks each sample's days
    among them, and ``rows``/``cols`` map cube pixels to grid cells."""
    offsets = np.arange(patch) - patch // 2
    gy = rows[samples[:, 1, None] + offsets]  # (N, p)
    gx = cols[samples[:, 2, None] + offsets]
    picked = features[day_index[:, :, None, None], :, gy[:, None, :, None], gx[:, None, None, :]]
    return picked.transpose(0, 1, 4, 2, 3)  # (N, L, p, p, F) -> (N, L, F, p, p)

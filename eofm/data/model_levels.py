"""ERA5 on model levels: detect them, and interpolate them to pressure levels.

ERA5 is produced on the IFS's 137 hybrid sigma-pressure levels (L137). The CDS serves
them as "model levels" (``reanalysis-era5-complete``, ``levtype=ml``), and the files look
much like pressure-level files: a ``level`` coordinate numbered 1 .. 137. Read as hPa,
level 100 (about 600 hPa over the sea) would pass for 100 hPa. Model levels are told
apart by:

* ``grib_to_netcdf`` files (the CDS's NetCDF before 2024): the ``level`` coordinate's
  ``long_name`` is ``model_level_number`` (pressure-level files say ``pressure_level``,
  units ``millibars``);
* the CDS's NetCDF since 2024: a ``model_level`` coordinate;
* cfgrib (GRIB read through xarray): a ``hybrid`` coordinate, or variables whose
  ``GRIB_typeOfLevel`` is ``hybrid``;
* WAM2layers-style file names ``*_ml_<var>.nc`` whose level coordinate has no pressure
  units.

The pressure of half level ``k`` is ``a[k] + b[k] * sp``; that of full level ``k`` the
mean of its two half levels (ECMWF IFS documentation, Part III: Dynamics and numerical
procedures, eq. 2.11; the ``a``/``b`` table is ECMWF's "L137 model level definitions",
shipped as ``levels/era5_l137.csv``, see ``levels/ATTRIBUTION.md``). Values are then
interpolated linearly in log-pressure to the requested pressure levels, the way
ECMWF's own post-processing (and MetPy's ``log_interpolate_1d``) does. Below the lowest
model level (a pressure level under the ground or within ~10 m of it) winds and
humidity take the lowest level's value, and temperature follows the standard lapse
rate of 6.5 K/km from it, as the IFS's pressure-level post-processing extrapolates them.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from eofm.errors import EofmError

log = logging.getLogger(__name__)

#: The L137 half-level coefficients (138 rows: n, a in Pa, b).
L137_TABLE = Path(__file__).with_name("levels") / "era5_l137.csv"
#: Standard pressure levels (hPa) model levels are interpolated to when data.levels is unset:
#: the 13 levels of WeatherBench 2 and Aurora.
DEFAULT_PRESSURE_LEVELS = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
#: Dimension names a model-level coordinate goes by (renamed to ``model_level``).
_MODEL_LEVEL_DIMS = ("model_level", "hybrid", "model_level_number")
_PRESSURE_UNITS = ("millibars", "hpa", "pa", "mbar", "mb")
#: R_d * gamma / g for the standard-atmosphere lapse rate 6.5 K/km.
_LAPSE_EXPONENT = 287.05 * 0.0065 / 9.80665


@lru_cache(maxsize=1)
def l137_coefficients() -> tuple[np.ndarray, np.ndarray]:
    """The 138 half-level ``a`` (Pa) and ``b`` of ERA5's L137 grid, top to surface."""
    table = np.loadtxt(L137_TABLE, delimiter=",", skiprows=1)
    return table[:, 1], table[:, 2]


def model_level_coordinate(ds: Any, path: Path) -> str | None:
    """The name of ``ds``'s model-level coordinate, or None when it has none."""
    for name in _MODEL_LEVEL_DIMS:
        if name in ds.dims or name in ds.coords:
            return name
    if "level" in ds.coords:
        attrs = ds["level"].attrs
        described = " ".join(
            str(attrs.get(k, "")).lower() for k in ("long_name", "standard_name", "units")
        )
        if "model_level" in described or "hybrid" in described:
            return "level"
        pressure_units = str(attrs.get("units", "")).lower() in _PRESSURE_UNITS
        if "_ml_" in f"_{path.stem}_".replace(".", "_") and not pressure_units:
            return "level"
    for array in ds.data_vars.values():
        if array.attrs.get("GRIB_typeOfLevel") == "hybrid":
            return next((d for d in array.dims if d not in ("time", "latitude", "longitude")), None)
    return None


def full_level_pressure(levels: np.ndarray, surface_pressure: np.ndarray) -> np.ndarray:
    """Pressure (Pa) of full model ``levels`` (1 .. 137), ``(..., K, H, W)`` for ``sp``
    ``(..., H, W)`` in Pa: the mean of the half levels above and below each."""
    a, b = l137_coefficients()
    k = np.asarray(levels, dtype=int)
    a_full = 0.5 * (a[k - 1] + a[k])
    b_full = 0.5 * (b[k - 1] + b[k])
    sp = surface_pressure[..., None, :, :]
    return a_full[:, None, None] + b_full[:, None, None] * sp


def check_level_numbers(levels: np.ndarray, path: Path) -> np.ndarray:
    """The model level numbers of ``path``, checked to be L137's 1 .. 137."""
    numbers = np.asarray(levels, dtype=np.float64)
    if (numbers != np.round(numbers)).any() or numbers.min() < 1 or numbers.max() > 137:
        raise EofmError(
            f"{path} is on model levels, but its levels {numbers.min():g} .. {numbers.max():g} "
            "are not ERA5's L137 level numbers 1 .. 137; convert it to pressure levels first "
            "(or download the CDS pressure-level product)."
        )
    return numbers.astype(int)


def interpolate_to_pressure(
    values: np.ndarray,
    levels: np.ndarray,
    surface_pressure: np.ndarray,
    targets_hpa: tuple[float, ...],
    *,
    name: str,
    path: Path,
) -> np.ndarray:
    """``values`` ``(T, K, H, W)`` on model ``levels`` -> ``(T, P, H, W)`` on ``targets_hpa``.

    Linear in log-pressure between the two model levels around each target; a target
    above the file's top level is an error (the file lacks the levels it needs), one below
    its lowest level is extrapolated (see the module docstring) when that level is the
    surface-most, L137 level 137, and an error otherwise.
    """
    order = np.argsort(levels)
    levels, values = np.asarray(levels)[order], values[:, order]
    pressure = full_level_pressure(levels, surface_pressure)  # (T, K, H, W), increasing in K
    log_p = np.log(pressure)
    out = np.empty((values.shape[0], len(targets_hpa), *values.shape[2:]), dtype=np.float32)
    for i, target in enumerate(targets_hpa):
        target_pa = float(target) * 100.0
        above = (pressure < target_pa).sum(axis=1, keepdims=True)  # levels above the target
        if (above == 0).any():
            top = float(pressure[:, 0].min()) / 100.0
            raise EofmError(
                f"{path}: {name} on model levels {levels.min()} .. {levels.max()} has its top "
                f"at {top:.1f} hPa; {target:g} hPa needs higher levels (smaller level numbers). "
                "Download more model levels, or drop that level from data.levels."
            )
        below_ground = above == len(levels)
        if below_ground.any() and levels.max() != 137:
            raise EofmError(
                f"{path}: {name} on model levels {levels.min()} .. {levels.max()} does not reach "
                f"the surface; {target:g} hPa lies below its lowest level. Download the levels "
                "down to 137."
            )
        upper = np.clip(above - 1, 0, len(levels) - 1)
        lower = np.clip(above, 0, len(levels) - 1)
        lp0 = np.take_along_axis(log_p, upper, axis=1)
        lp1 = np.take_along_axis(log_p, lower, axis=1)
        v0 = np.take_along_axis(values, upper, axis=1)
        v1 = np.take_along_axis(values, lower, axis=1)
        span = np.where(lp1 > lp0, lp1 - lp0, 1.0)
        weight = np.clip((np.log(target_pa) - lp0) / span, 0.0, 1.0)
        result = v0 + weight * (v1 - v0)
        if name == "t" and below_ground.any():
            p_lowest = pressure[:, -1:]
            lapse = values[:, -1:] * (target_pa / p_lowest) ** _LAPSE_EXPONENT
            result = np.where(below_ground, lapse, result)
        out[:, i] = result[:, 0]
    return out


def describe(path: Path, coordinate: str, levels: np.ndarray) -> str:
    """One line saying what was found (for the log)."""
    return (
        f"{path.name}: model levels ({coordinate} {int(np.min(levels))} .. "
        f"{int(np.max(levels))}, ERA5 L137)"
    )

"""Datacubes in the Mesogeos layout, generated for tests (the real cube is 1.4 TB).

As ``mesogeos_cube.zarr``: dims ``(time, y, x)``, daily, EPSG:4326 coordinates ``x``
(longitude) and ``y`` (latitude, decreasing) at about 1 km; the dynamic variables and the
static ``(y, x)`` variables by their Mesogeos names; targets ``ignition_points`` (burned
hectares of the fires started that day, else 0) and ``burned_areas`` (0/1).

The planted signal: a fire starts on day t+1 where the previous days were hot and dry
(high t2m, low rh) and the place is populated and forested, with a little noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from eofm.data.firecube_config import MESOGEOS_DYNAMIC, MESOGEOS_STATIC


def make_cube(
    path: Path,
    *,
    years: tuple[int, ...] = (2019, 2020, 2021),
    days_per_year: int = 40,
    size: int = 12,
    seed: int = 0,
    drop: tuple[str, ...] = (),
    static_size: int | None = None,
    start: str | None = None,
    origin: tuple[float, float] = (38.0, 22.0),
) -> Path:
    """A cube of ``days_per_year`` days in each of ``years`` from 1 July (or, with
    ``start``, that many consecutive days from it), its north-west cell at ``origin``."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    firsts = [pd.Timestamp(start)] if start else [pd.Timestamp(f"{y}-07-01") for y in years]
    times = pd.DatetimeIndex(
        [first + pd.Timedelta(days=d) for first in firsts for d in range(days_per_year)]
    )
    t = len(times)
    y = np.round(origin[0] - np.arange(size) * 0.009, 4)
    x = np.round(origin[1] + np.arange(size) * 0.009, 4)
    dyn = {v: rng.normal(0, 1, (t, size, size)).astype(np.float32) for v in MESOGEOS_DYNAMIC}
    dyn["t2m"] = (300 + 5 * rng.normal(0, 1, (t, size, size))).astype(np.float32)
    dyn["rh"] = np.clip(50 + 15 * rng.normal(0, 1, (t, size, size)), 1, 100).astype(np.float32)
    stat = {v: rng.uniform(0, 1, (size, size)).astype(np.float32) for v in MESOGEOS_STATIC}
    # danger on day t+1 from the 3 days up to t: hot, dry, populated, forested
    heat = (dyn["t2m"] - 300) / 5 - (dyn["rh"] - 50) / 15
    recent = np.zeros_like(heat)
    for k in range(3):
        recent[3:] += heat[3 - 1 - k : t - 1 - k]
    place = 2 * stat["population"] + 2 * stat["lc_forest"]
    danger = recent / 3 + place + rng.normal(0, 0.3, heat.shape)
    ignition = (danger > np.quantile(danger, 0.985)) & (np.arange(t) >= 3)[:, None, None]
    hectares = np.where(ignition, rng.uniform(1, 200, ignition.shape), 0.0).astype(np.float32)
    data = {}
    for name, arr in dyn.items():
        data[name] = (("time", "y", "x"), arr)
    for name, arr in stat.items():
        if static_size:  # statics on another grid: a broken cube
            data[name] = (("y_static", "x_static"), arr[:static_size, :static_size])
        else:
            data[name] = (("y", "x"), arr)
    data["ignition_points"] = (("time", "y", "x"), hectares)
    data["burned_areas"] = (("time", "y", "x"), (hectares > 0).astype(np.float32))
    for name in drop:
        data.pop(name)
    ds = xr.Dataset(data, coords={"time": times, "y": y, "x": x})
    ds.attrs["crs"] = "EPSG:4326"
    ds.to_zarr(path, mode="w")
    return path

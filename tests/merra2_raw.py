"""Raw MERRA-2 collection files in NASA GES DISC's layout, made small.

One file per collection and day, ``MERRA2_400.<collection>.YYYYMMDD.nc4`` (the constants
``MERRA2_101.<collection>.00000000.nc4``), as the MERRA-2 File Specification (Bosilovich
et al., GMAO Office Note No. 9) describes them: dims ``time``, (``lev``), ``lat``, ``lon``;
``time`` in minutes since the first stamp of the file, with ``begin_date``/``begin_time``
(hourly means are stamped at HH:30, ``begin_time`` 3000); ``lev`` the 72 model levels,
top (1) to surface (72); float32 fields with ``_FillValue`` 1e15. The grid is a subset
(as GES DISC's subsetter serves: ``.SUB.nc``-style windows) of the real 0.5 x 0.625 degree
grid, and the values are generated (no MERRA-2 file is in ../shared/data), with NaN over
water in the land collection, as the real one has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eofm.data.merra2_prepare import COLLECTIONS, CONSTANTS

LAT = np.arange(6) * 0.5 + 45.0
LON = np.arange(8) * 0.625 + 0.0


def _time(day: str, stamps: np.ndarray, start_minute: int):
    import xarray as xr

    units = f"minutes since {day[:4]}-{day[4:6]}-{day[6:]} 00:{start_minute:02d}:00"
    return xr.Variable(
        "time",
        stamps.astype(np.int32),
        {
            "long_name": "time",
            "units": units,
            "begin_date": np.int32(int(day)),
            "begin_time": np.int32(start_minute * 100),
        },
    )


def value(name: str, day: str, minute: np.ndarray, lev: np.ndarray | None = None) -> np.ndarray:
    """A field that differs by variable, day, time, level and cell (to check the mapping)."""
    seed = sum(map(ord, name))
    t = (int(day) % 100) * 1440 + minute
    cell = np.add.outer(LAT, LON / 10.0)
    base = seed + t[:, None, None] / 1000.0 + cell[None]
    if lev is None:
        return base.astype(np.float32)
    return (base[:, None] + lev[None, :, None, None] / 100.0).astype(np.float32)


def write_raw_merra2(folder: Path, days: tuple[str, ...] = ("20200101", "20200102")) -> Path:
    import xarray as xr

    folder.mkdir(parents=True, exist_ok=True)
    coords = {
        "lat": ("lat", LAT, {"units": "degrees_north"}),
        "lon": ("lon", LON, {"units": "degrees_east"}),
    }
    fill = {"_FillValue": np.float32(1e15)}
    for day in days:
        for collection, (kind, names) in COLLECTIONS.items():
            if kind == "instant":
                minutes, start = np.arange(24) * 60, 0
            elif kind == "hourly_mean":
                minutes, start = np.arange(24) * 60 + 30, 30
            else:
                minutes, start = np.arange(8) * 180, 0
            lev = np.arange(1, 73, dtype=np.float64) if kind == "levels" else None
            variables = {}
            for name in names:
                data = value(name, day, minutes, lev)
                if name in ("GWETROOT", "LAI"):
                    data[:, :2, :] = np.nan  # over water
                dims = ("time", "lev", "lat", "lon") if lev is not None else ("time", "lat", "lon")
                variables[name] = (dims, data, {"units": "1", "long_name": name})
            c = dict(coords, time=_time(day, minutes - start, start))
            if lev is not None:
                c["lev"] = ("lev", lev, {"units": "layer"})
            ds = xr.Dataset(variables, coords=c, attrs={"ShortName": collection})
            path = folder / f"MERRA2_400.{collection}.{day}.nc4"
            ds.to_netcdf(path, encoding={n: fill for n in names})
    for collection, names in CONSTANTS.items():
        months = 12 if collection == "const_2d_ctm_Nx" else 1
        variables = {
            n: (("time", "lat", "lon"), value(n, "00000000", np.arange(months) * 43200))
            for n in names
        }
        c = dict(coords, time=_time("20000101", np.arange(months) * 43200, 0))
        xr.Dataset(variables, coords=c).to_netcdf(folder / f"MERRA2_101.{collection}.00000000.nc4")
    return folder

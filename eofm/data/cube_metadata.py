"""What a zarr datacube holds, from its metadata and its ``time`` array alone.

Light (zarr-python and numpy; no xarray, dask or torch): the recipe's pre-flight checks
(``FireCubeConfig.check_files``) and ``eofm predict --date`` read the variable names and
the daily time axis here in milliseconds, before anything heavy is imported. The time
axis is decoded as CF conventions write it (``units: "days since 2006-04-01"``, CF 1.11
section 4.4; the Mesogeos cube and xarray's ``to_zarr`` write it so). A NetCDF cube, or a
time axis in another calendar, is left to the datamodule, which opens it with xarray.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eofm.errors import RecipeError

#: CF time units and their length in seconds.
_UNIT_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
_CALENDARS = (None, "standard", "gregorian", "proleptic_gregorian")


@dataclass
class CubeMetadata:
    """The arrays of a zarr datacube by name, and its days (``None``: not decodable here)."""

    variables: list[str]
    days: np.ndarray | None


def read_cube_metadata(root: Path, key: str) -> CubeMetadata | None:
    """The metadata of the zarr cube ``root`` (``key`` names it in errors); ``None`` for a
    single file (NetCDF), which the datamodule opens itself."""
    root = Path(root)
    if not root.exists():
        raise RecipeError(f"Datacube {root} ({key}) does not exist.")
    if root.is_file():
        return None
    import zarr

    try:
        group = zarr.open_group(str(root), mode="r")
        names = sorted(group.array_keys())
    except Exception:
        names = []
        group = None
    if group is None or "time" not in names:
        found = sorted(p.name for p in root.iterdir())[:10]
        raise RecipeError(
            f"{root} ({key}) is not a zarr datacube with a time axis (it holds {found or 'nothing'})."
        )
    return CubeMetadata(names, decode_days(group["time"]))


def decode_days(time: Any) -> np.ndarray | None:
    """The ``datetime64[D]`` days of a CF-encoded zarr time array, or ``None``."""
    values = np.asarray(time[:])
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[D]")
    units = str(time.attrs.get("units", ""))
    unit, _, origin = units.partition(" since ")
    if unit not in _UNIT_SECONDS or time.attrs.get("calendar") not in _CALENDARS:
        return None
    try:
        start = datetime.datetime.fromisoformat(origin.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    seconds = np.rint(values.astype(np.float64) * _UNIT_SECONDS[unit]).astype(np.int64)
    base = np.datetime64(start.replace(tzinfo=None), "s")
    return (base + seconds.astype("timedelta64[s]")).astype("datetime64[D]")


def check_date_in_cube(cube: str | Path, date: str) -> None:
    """``eofm predict --date D CUBE``: D must be a day of the cube's time axis."""
    from eofm.data.coords import parse_date

    meta = read_cube_metadata(Path(cube), "the datacube")
    if meta is None or meta.days is None:
        return
    year, doy = parse_date(date)
    day = np.datetime64(f"{year}-01-01") + np.timedelta64(doy - 1, "D")
    if not bool((meta.days == day).any()):
        raise RecipeError(
            f"--date {date} is not in the cube {cube} (it covers {meta.days.min()} .. "
            f"{meta.days.max()})."
        )

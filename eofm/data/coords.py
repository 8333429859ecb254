"""Time and location coordinates (Prithvi TL) and ground sample distance (Scale-MAE) of rasters.

Szwarcman et al., "Prithvi-EO-2.0", arXiv:2412.02732: TL models add a sin-cos encoding of
``temporal_coords (B, T, 2)`` = [year, day of year] and ``location_coords (B, 2)`` =
[lat, lon] (degrees, EPSG:4326). Locations are the centre of a chip (or of a tile at
prediction time), transformed from the raster's CRS.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eofm.errors import EofmError

_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")


def parse_date(text: str) -> tuple[int, int]:
    """``YYYY-MM-DD`` (or ``YYYY/MM/DD``, or a TIFF ``YYYY:MM:DD hh:mm:ss``) -> (year, doy)."""
    match = _DATE.search(str(text).replace(":", "-", 2))
    if not match:
        raise EofmError(f"Date {text!r} is not of the form YYYY-MM-DD.")
    year, month, day = (int(v) for v in match.groups())
    try:
        date = dt.date(year, month, day)
    except ValueError as exc:
        raise EofmError(f"Date {text!r} is not a valid date ({exc}).") from None
    return date.year, date.timetuple().tm_yday


def to_latlon(crs: Any, xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    """Points of ``crs`` as (lat, lon) in degrees."""
    from rasterio.warp import transform

    if crs is None:
        raise EofmError("The raster has no CRS, so its location is unknown.")
    lons, lats = transform(crs, "EPSG:4326", list(xs), list(ys))
    return list(zip(lats, lons, strict=True))


def raster_centre(path: Path) -> tuple[float, float]:
    """(lat, lon) of the centre of a raster, from its header."""
    import rasterio

    with rasterio.open(path) as ds:
        x, y = ds.xy(ds.height / 2 - 0.5, ds.width / 2 - 0.5)  # the centre pixel's centre
        return to_latlon(ds.crs, [x], [y])[0]


def acquisition_date(tags: dict[str, str]) -> tuple[int, int] | None:
    """(year, doy) from a GeoTIFF's tags, when it records one."""
    for key in ("ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "TIFFTAG_DATETIME", "DATE"):
        if key in tags:
            try:
                return parse_date(tags[key])
            except EofmError:
                continue
    return None


#: Metres per degree of latitude, and of longitude at the equator (WGS 84, mean values).
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0


def metres_per_pixel(path: Path) -> float:
    """The ground sample distance of a raster in metres: the mean of its pixel width and
    height, converted from degrees at the raster's centre for a geographic CRS."""
    import math

    import rasterio

    with rasterio.open(path) as ds:
        crs, (xres, yres) = ds.crs, ds.res
        if crs is None:
            raise EofmError(
                f"{path} has no CRS, so its ground sample distance in metres is unknown; "
                "set backbone.gsd to give it."
            )
        if crs.is_geographic:
            lat = to_latlon(crs, *([v] for v in ds.xy(ds.height / 2, ds.width / 2)))[0][0]
            return (xres * M_PER_DEG_LON * math.cos(math.radians(lat)) + yres * M_PER_DEG_LAT) / 2
        factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
        return (xres + yres) / 2 * factor

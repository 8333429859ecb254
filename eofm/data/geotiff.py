"""Reading GeoTIFF chips with rasterio, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eofm.errors import EofmError


@dataclass
class RasterArray:
    """Pixels of selected bands, their validity mask and georeferencing."""

    data: np.ndarray  # float32 (C, H, W)
    valid: np.ndarray  # bool (H, W): every selected band finite and not nodata
    transform: Any
    crs: Any
    nodata: float | None


def _unreadable(path: Path, exc: Exception) -> EofmError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return EofmError(f"Cannot read raster {path}: {reason}")


def read_raster(
    path: Path, *, bands: Sequence[int] | None = None, window: Any = None
) -> RasterArray:
    """Read 1-based ``bands`` (all when ``None``) of a raster as float32."""
    import rasterio

    path = Path(path)
    if not path.is_file():
        raise EofmError(f"Raster {path} does not exist.")
    try:
        with rasterio.open(path) as ds:
            indexes = list(bands) if bands is not None else list(range(1, ds.count + 1))
            if max(indexes) > ds.count:
                raise EofmError(
                    f"Raster {path} has {ds.count} bands; band {max(indexes)} was asked for."
                )
            raw = ds.read(indexes, window=window)
            nodata = ds.nodata
            transform = ds.window_transform(window) if window is not None else ds.transform
            crs = ds.crs
    except EofmError:
        raise
    except Exception as exc:  # rasterio raises several error types for damaged files
        raise _unreadable(path, exc) from None
    data = raw.astype(np.float32, copy=False)
    valid = np.isfinite(data).all(axis=0)
    if nodata is not None and not np.isnan(nodata):
        valid &= (raw != nodata).all(axis=0)
    return RasterArray(data, valid, transform, crs, nodata)


def read_label(path: Path, *, window: Any = None) -> np.ndarray:
    """Read band 1 of a label raster as int64."""
    import rasterio

    path = Path(path)
    if not path.is_file():
        raise EofmError(f"Label file {path} does not exist.")
    try:
        with rasterio.open(path) as ds:
            return ds.read(1, window=window).astype(np.int64)
    except Exception as exc:
        raise _unreadable(path, exc) from None


def raster_size(path: Path) -> tuple[int, int]:
    """(height, width) of a raster, read from its header only."""
    import rasterio

    try:
        with rasterio.open(path) as ds:
            return ds.height, ds.width
    except Exception as exc:
        raise _unreadable(Path(path), exc) from None


def band_percentiles(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-band 1st and 99th percentiles of the finite values of ``(C, N)``."""
    stats = band_statistics(values)
    return stats["p01"], stats["p99"]


#: The percentiles ``band_statistics`` records: the tails (1st/99th) and the quartiles,
#: whose median and spread (IQR) are robust to a few odd pixels.
BAND_PERCENTILES = {"p01": 1, "p25": 25, "p50": 50, "p75": 75, "p99": 99}


def band_statistics(values: np.ndarray) -> dict[str, list[float]]:
    """Per-band percentiles (``BAND_PERCENTILES``) of the finite values of ``(C, N)``."""
    out: dict[str, list[float]] = {key: [] for key in BAND_PERCENTILES}
    for band in values:
        finite = band[np.isfinite(band)]
        found = (
            np.percentile(finite, list(BAND_PERCENTILES.values()))
            if finite.size
            else [np.nan] * len(BAND_PERCENTILES)
        )
        for key, value in zip(BAND_PERCENTILES, found, strict=True):
            out[key].append(float(value))
    return out


def raster_dtype(path: Path) -> str:
    """The data type of a raster's first band, read from its header only."""
    import rasterio

    try:
        with rasterio.open(path) as ds:
            return ds.dtypes[0]
    except Exception as exc:
        raise _unreadable(Path(path), exc) from None

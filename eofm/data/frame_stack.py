"""Single-date scenes of one grid as one multi-date stack: a GDAL VRT, frame-major.

A model trained on stacks of ``T`` dates (``data.frames``) reads scenes of ``T x C``
bands. ``eofm predict`` also takes the dates as separate scenes: the inputs that are not
stacks are taken ``T`` at a time, in name order (name them by date), and each group
becomes one VRT (GDAL's "VRT -- GDAL Virtual Format": one ``VRTRasterBand`` per frame and
band, a ``SimpleSource`` pointing at the scene's band; nothing is copied), the way
:mod:`eofm.data.sentinel2_products` stacks band files. The frames must share a grid
(CRS, transform and size): GDAL would not resample them, and a model must not see
shifted frames. Each frame's acquisition date (its tags) goes into the VRT's
``FRAME_DATES`` metadata, which ``eofm predict`` gives TL models per frame.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from eofm.data.vrt_files import GDAL_TYPES, Band, Source, vrt_document, write_scratch_vrt
from eofm.errors import EofmError


@dataclass
class Frame:
    path: Path
    count: int
    grid: tuple  # (crs wkt, transform, width, height)
    dtypes: tuple[str, ...]
    nodata: float | None
    descriptions: tuple[str | None, ...]
    date: tuple[int, int] | None


def _frame(path: Path) -> Frame:
    import rasterio

    from eofm.data.coords import acquisition_date

    try:
        with rasterio.open(path) as ds:
            crs = ds.crs.to_wkt() if ds.crs else None
            grid = (crs, tuple(ds.transform)[:6], ds.width, ds.height)
            return Frame(
                path,
                ds.count,
                grid,
                tuple(ds.dtypes),
                ds.nodata,
                tuple(ds.descriptions),
                acquisition_date(ds.tags()),
            )
    except Exception as exc:
        raise EofmError(f"Cannot read raster {path}: {exc}") from None


def _frame_indexes(frame: Frame, bands: Sequence[str]) -> list[int]:
    """1-based bands of a single-date scene that feed the model's per-frame ``bands``."""
    if frame.count == len(bands):
        return list(range(1, frame.count + 1))
    from eofm.bands import band_indices, check_band_names

    if frame.descriptions and all(frame.descriptions):
        names = check_band_names(frame.descriptions, where=f"the band descriptions of {frame.path}")
        return [i + 1 for i in band_indices(bands, names, where=str(frame.path))]
    raise EofmError(
        f"{frame.path} has {frame.count} unnamed bands; a frame of this model holds "
        f"{len(bands)} ({list(bands)}), or names them in its band descriptions."
    )


def _describe(frame: Frame) -> str:
    crs, transform, width, height = frame.grid
    origin = f"({transform[2]:.6g}, {transform[5]:.6g})"
    pixel = f"{transform[0]:.6g} x {abs(transform[4]):.6g}"
    epsg = (crs or "no CRS").split('ID["EPSG",')[-1].split("]")[0] if crs else "no CRS"
    return f"{frame.path} ({width}x{height} px, {pixel} pixels, origin {origin}, CRS {epsg})"


def stack_single_dates(
    scenes: Sequence[Path], frames: Sequence[Mapping[str, str]], stack_bands: Sequence[str]
) -> list[Path]:
    """``scenes`` with the single-date ones replaced by VRT stacks of ``len(frames)``
    dates each (in name order); stacks (``len(stack_bands)`` bands) stay as they are."""
    from eofm.bands import frame_bands

    per_frame = frame_bands(stack_bands)
    infos = [_frame(Path(s)) for s in scenes]
    stacks = [i.path for i in infos if i.count == len(stack_bands)]
    singles = sorted((i for i in infos if i.count != len(stack_bands)), key=lambda i: i.path.name)
    t = len(frames)
    if len(singles) % t:
        names = ", ".join(str(i.path) for i in singles)
        raise EofmError(
            f"The model reads {t} dates ({', '.join(f['name'] for f in frames)}) per scene: "
            f"give single-date scenes {t} at a time, or stacks of {len(stack_bands)} bands; "
            f"{len(singles)} single-date scene(s) were given ({names}).",
            exit_code=2,
        )
    groups = [singles[i : i + t] for i in range(0, len(singles), t)]
    return stacks + [_stack_vrt(group, per_frame) for group in groups]


def _stack_vrt(group: Sequence[Frame], bands: Sequence[str]) -> Path:
    first = group[0]
    odd = [f for f in group[1:] if f.grid != first.grid]
    if odd:
        raise EofmError(
            "Frames of one scene must share a grid (CRS, pixel size, origin and size), and "
            f"{_describe(odd[0])} differs from {_describe(first)}; resample them onto one grid "
            "first.",
            exit_code=2,
        )
    crs, (a, b, c, d, e, f), width, height = first.grid
    dated = all(fr.date for fr in group)
    metadata = {"FRAME_DATES": ",".join(_iso(*fr.date) for fr in group)} if dated else None
    vrt_bands = [
        Band(
            GDAL_TYPES.get(frame.dtypes[index - 1], "Float32"),
            [Source(frame.path.absolute(), index)],
            nodata=frame.nodata,
        )
        for frame in group
        for index in _frame_indexes(frame, bands)
    ]
    document = vrt_document((width, height), crs, (c, a, b, f, d, e), vrt_bands, metadata)
    return write_scratch_vrt(f"{first.path.name.rsplit('.', 1)[0]}_frames", document)


def _iso(year: int, day: int) -> str:
    return (dt.date(year, 1, 1) + dt.timedelta(days=day - 1)).isoformat()

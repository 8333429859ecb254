"""A Sen1Floods11 chip's S1Hand and S2Hand rasters as one multi-modal stack (a GDAL VRT).

Sen1Floods11 v1.1 (Bonafilia et al., CVPR-W 2020; github.com/cloudtostreet/Sen1Floods11,
``v1.1/data/flood_events/HandLabeled/``) stores each hand-labelled chip twice:
``S1Hand/<EVENT>_<ID>_S1Hand.tif`` (VV, VH in dB, float32, NaN = no data) and
``S2Hand/<EVENT>_<ID>_S2Hand.tif`` (the 13 L1C bands, reflectance x 10000, the file's
nodata value = no data), on the grid of ``LabelHand/<EVENT>_<ID>_LabelHand.tif``.
TerraTorch feeds both to TerraMind by pairing the files of one chip by that prefix
(``terratorch/datasets/generic_multimodal_dataset.py``, ``image_grep`` ``{"S2L1C":
"*_S2Hand.tif", "S1GRD": "*_S1Hand.tif"}`` in its multi-modal Sen1Floods11 examples).

Here the bands of ``data.bands`` are taken from whichever file holds each, in the order
given, into one VRT (GDAL's "VRT -- GDAL Virtual Format": a ``VRTRasterBand`` per band
pointing at its file's band; nothing is copied), so that reading, crops, statistics and
``eofm test``'s tiled prediction see one raster, as for single-sensor chips. Every band
is Float32 with NaN as no data: a band whose file has a nodata value reads through a
``ComplexSource`` with that ``NODATA``, so its no-data pixels become NaN and are masked
as the single-sensor reader masks them (S1Hand: NaN; S2Hand: the file's nodata value).
The two files must lie on one grid (size, CRS and transform): GDAL would not resample
them, and a model must not see shifted modalities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eofm.data.sen1floods11_layout import band_sources, chip_image
from eofm.data.vrt_files import Band, Source, vrt_document, write_scratch_vrt
from eofm.errors import EofmError

#: Largest offset (in pixels) between two files' grids still taken as one grid: the
#: release's rasters of one chip differ in the last digits of their transforms.
GRID_TOLERANCE_PX = 0.01


@dataclass
class ChipFile:
    path: Path
    width: int
    height: int
    crs: str | None
    transform: object  # affine.Affine
    nodata: float | None


def _header(path: Path) -> ChipFile:
    import rasterio

    try:
        with rasterio.open(path) as ds:
            crs = ds.crs.to_wkt() if ds.crs else None
            return ChipFile(path, ds.width, ds.height, crs, ds.transform, ds.nodata)
    except Exception as exc:  # rasterio raises several error types for damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EofmError(f"Cannot read raster {path}: {reason}") from None


def _same_grid(a: ChipFile, b: ChipFile) -> bool:
    """Same size and CRS, and ``b``'s corners within ``GRID_TOLERANCE_PX`` of ``a``'s."""
    if (a.width, a.height) != (b.width, b.height) or a.crs != b.crs:
        return False
    to_a = ~a.transform @ b.transform  # b's pixel coordinates -> a's
    corners = [(0, 0), (b.width, 0), (0, b.height), (b.width, b.height)]
    return all(
        abs(x - u) <= GRID_TOLERANCE_PX and abs(y - v) <= GRID_TOLERANCE_PX
        for (u, v), (x, y) in zip(corners, [to_a @ c for c in corners], strict=True)
    )


def _describe(f: ChipFile) -> str:
    t = f.transform
    return (
        f"{f.path} ({f.width}x{f.height} px, pixel {t.a:.9g} x {abs(t.e):.9g}, "
        f"origin ({t.c:.9g}, {t.f:.9g}))"
    )


def stack_chip(root: Path, chip: str, bands: Sequence[str]) -> Path:
    """A VRT of ``chip``'s ``bands`` (from S1Hand and S2Hand, in the order given; band
    descriptions are the band names). Errors name a missing file, or both files when
    their grids differ."""
    sources = band_sources(bands)
    files: dict[str, ChipFile] = {}
    for folder, _ in sources:
        if folder not in files:
            path = chip_image(root, folder, chip)
            if not path.is_file():
                raise EofmError(f"{path} does not exist (chip {chip}, data.bands {list(bands)}).")
            files[folder] = _header(path)
    first, *others = files.values()
    for other in others:
        if not _same_grid(first, other):
            raise EofmError(
                f"The rasters of chip {chip} are on different grids: {_describe(first)} and "
                f"{_describe(other)}; Sen1Floods11's S1Hand and S2Hand chips share the "
                "label's grid."
            )
    vrt_bands = []
    for band, (folder, index) in zip(bands, sources, strict=True):
        file = files[folder]
        nodata = None if file.nodata is None or math.isnan(file.nodata) else file.nodata
        source = Source(file.path.absolute(), index, nodata=nodata)
        vrt_bands.append(Band("Float32", [source], band, math.nan))
    size, transform = (first.width, first.height), first.transform.to_gdal()
    document = vrt_document(size, first.crs, transform, vrt_bands)
    return write_scratch_vrt(f"{chip}_{'_'.join(files)}", document)

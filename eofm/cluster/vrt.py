"""A VRT mosaic of GeoTIFFs in one CRS: what ``gdalbuildvrt -resolution highest`` writes.

GDAL's own builder (``osgeo.gdal.BuildVRT``) is used when its Python bindings are
installed. They are not a dependency of eofm (PyPI has no wheel of them; rasterio's
wheels carry GDAL without its utilities), so otherwise the same document is written
with eofm's VRT builder (:mod:`eofm.data.vrt_files`) after the layout of
``apps/gdalbuildvrt_lib.cpp``: one ``ComplexSource`` per file and band, with the file's
nodata value as ``NODATA`` so that a file's empty edges never cover its neighbours, paths
relative to the VRT, the grid of the finest input, later files drawn over earlier ones.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from eofm.atomic import atomic_path
from eofm.data.vrt_files import GDAL_TYPES, Band, Source, vrt_document, write_vrt
from eofm.errors import EofmError


def build_vrt(sources: Sequence[Path], target: Path) -> None:
    """Write ``target``, a VRT mosaic of ``sources`` (GeoTIFFs in one CRS, north up)."""
    if not sources:
        raise EofmError(f"No raster to put in the mosaic {target}.")
    try:
        from osgeo import gdal
    except ImportError:
        gdal = None
    with atomic_path(Path(target)) as tmp:
        if gdal is not None:
            options = gdal.BuildVRTOptions(resolution="highest")
            dataset = gdal.BuildVRT(str(tmp), [str(s) for s in sources], options=options)
            if dataset is None:
                raise EofmError(
                    f"GDAL could not build the mosaic {target}: {gdal.GetLastErrorMsg()}"
                )
            dataset = None  # GDAL writes the VRT as the dataset closes
        else:
            write_vrt(_vrt_document(sources, Path(target).parent), tmp)


def _vrt_document(sources: Sequence[Path], folder: Path) -> ET.Element:
    import rasterio

    files, kinds, first = [], [], {}
    for path in sources:
        with rasterio.open(path) as ds:
            t = ds.transform
            if t.b or t.d:
                raise EofmError(f"{path} is not north up (rotated grid): it cannot be mosaicked.")
            try:
                colormap = ds.colormap(1)
            except ValueError:
                colormap = None
            first = first or {"descriptions": ds.descriptions, "colormap": colormap}
            kinds.append((ds.crs, ds.dtypes))
            size, block = (ds.width, ds.height), ds.block_shapes[0]
            files.append((Path(path), ds.bounds, (t.a, -t.e), size, block, ds.nodata))
    crs, dtypes = kinds[0]
    if any(kind != kinds[0] for kind in kinds):
        raise EofmError("A VRT mosaic needs rasters of one CRS and one data type.")
    res_x, res_y = min(f[2][0] for f in files), min(f[2][1] for f in files)
    left, top = min(f[1].left for f in files), max(f[1].top for f in files)
    right, bottom = max(f[1].right for f in files), min(f[1].bottom for f in files)
    width, height = max(1, round((right - left) / res_x)), max(1, round((top - bottom) / res_y))
    bands = []
    for band, dtype in enumerate(dtypes, start=1):
        data_type, mosaic = GDAL_TYPES[dtype], []
        for path, b, (rx, ry), (w, h), (block_y, block_x), nodata in files:
            dst = ((b.left - left) / res_x, (top - b.top) / res_y, w * rx / res_x, h * ry / res_y)
            props = (w, h, data_type, block_x, block_y)
            rel = os.path.relpath(path, folder)
            src = Source(rel, band, True, (0, 0, w, h), dst, nodata, properties=props, complex=True)
            mosaic.append(src)
        palette = first["colormap"] if band == 1 else None
        description = first["descriptions"][band - 1] or None
        bands.append(Band(data_type, mosaic, description, files[0][5], palette))
    geotransform = (left, res_x, 0.0, top, 0.0, -res_y)
    return vrt_document((width, height), crs.to_wkt() if crs else None, geotransform, bands)

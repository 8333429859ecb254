"""A VRT mosaic of GeoTIFFs in one CRS: what ``gdalbuildvrt -resolution highest`` writes.

GDAL's own builder (``osgeo.gdal.BuildVRT``) is used when its Python bindings are
installed. They are not a dependency of eofm (PyPI has no wheel of them; rasterio's
wheels carry GDAL without its utilities), so otherwise the same document is written
with :mod:`xml.etree.ElementTree`, as rasterio builds its own VRTs
(``rasterio.vrt._boundless_vrt_doc``), following GDAL's VRT format
(https://gdal.org/en/stable/drivers/raster/vrt.html) and the layout of
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
            ET.ElementTree(_vrt_document(sources, Path(target).parent)).write(
                tmp, encoding="utf-8", xml_declaration=False
            )


def _text(parent: ET.Element, tag: str, text: str, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element


def _vrt_document(sources: Sequence[Path], folder: Path) -> ET.Element:
    import rasterio

    infos = []
    for path in sources:
        with rasterio.open(path) as ds:
            t = ds.transform
            if t.b or t.d:
                raise EofmError(f"{path} is not north up (rotated grid): it cannot be mosaicked.")
            try:
                colormap = ds.colormap(1)
            except ValueError:
                colormap = None
            infos.append(
                {
                    "path": Path(path),
                    "bounds": ds.bounds,
                    "res": (t.a, -t.e),
                    "size": (ds.width, ds.height),
                    "block": ds.block_shapes[0],
                    "dtypes": ds.dtypes,
                    "nodata": ds.nodata,
                    "crs": ds.crs,
                    "colormap": colormap,
                    "descriptions": ds.descriptions,
                }
            )
    first = infos[0]
    if any(i["crs"] != first["crs"] or i["dtypes"] != first["dtypes"] for i in infos):
        raise EofmError("A VRT mosaic needs rasters of one CRS and one data type.")
    res_x = min(i["res"][0] for i in infos)
    res_y = min(i["res"][1] for i in infos)
    left = min(i["bounds"].left for i in infos)
    top = max(i["bounds"].top for i in infos)
    right = max(i["bounds"].right for i in infos)
    bottom = min(i["bounds"].bottom for i in infos)
    width = max(1, round((right - left) / res_x))
    height = max(1, round((top - bottom) / res_y))
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    if first["crs"]:
        _text(root, "SRS", first["crs"].to_wkt(), dataAxisToSRSAxisMapping="1,2")
    _text(root, "GeoTransform", ", ".join(repr(v) for v in (left, res_x, 0.0, top, 0.0, -res_y)))
    gdal_types = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16"}
    gdal_types |= {"uint32": "UInt32", "int32": "Int32", "float32": "Float32"}
    gdal_types |= {"float64": "Float64"}
    for band, dtype in enumerate(first["dtypes"], start=1):
        data_type = gdal_types[dtype]
        element = ET.SubElement(root, "VRTRasterBand", dataType=data_type, band=str(band))
        if first["descriptions"][band - 1]:
            _text(element, "Description", first["descriptions"][band - 1])
        if first["nodata"] is not None:
            _text(element, "NoDataValue", repr(first["nodata"]))
        if band == 1 and first["colormap"]:
            _text(element, "ColorInterp", "Palette")
            table = ET.SubElement(element, "ColorTable")
            for index in range(max(first["colormap"]) + 1):
                c = first["colormap"].get(index, (0, 0, 0, 0))
                ET.SubElement(
                    table, "Entry", c1=str(c[0]), c2=str(c[1]), c3=str(c[2]), c4=str(c[3])
                )
        for info in infos:
            source = ET.SubElement(element, "ComplexSource")
            relative = os.path.relpath(info["path"], folder)
            _text(source, "SourceFilename", relative, relativeToVRT="1")
            _text(source, "SourceBand", str(band))
            w, h = info["size"]
            ET.SubElement(
                source,
                "SourceProperties",
                RasterXSize=str(w),
                RasterYSize=str(h),
                DataType=data_type,
                BlockXSize=str(info["block"][1]),
                BlockYSize=str(info["block"][0]),
            )
            ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
            b = info["bounds"]
            ET.SubElement(
                source,
                "DstRect",
                xOff=repr((b.left - left) / res_x),
                yOff=repr((top - b.top) / res_y),
                xSize=repr(w * info["res"][0] / res_x),
                ySize=repr(h * info["res"][1] / res_y),
            )
            if info["nodata"] is not None:
                _text(source, "NODATA", repr(info["nodata"]))
    ET.indent(root)
    return root

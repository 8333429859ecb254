"""The GDAL VRTs eofm writes (Sentinel-2 products stacked by band, single-date frames
stacked by date, a Sen1Floods11 chip's S1Hand + S2Hand bands, mosaics of class maps):
one builder of their XML, after GDAL's VRT format (https://gdal.org/drivers/raster/vrt.html),
with :mod:`xml.etree.ElementTree` so that paths and names are escaped, and this process's
scratch folder for the files, removed when it exits."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: numpy dtype name -> GDAL data type name.
GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16"}
GDAL_TYPES |= {"uint32": "UInt32", "int32": "Int32", "float32": "Float32", "float64": "Float64"}

#: A pixel rectangle: xOff, yOff, xSize, ySize.
Rect = tuple[float, float, float, float]
_PROPERTIES = ("RasterXSize", "RasterYSize", "DataType", "BlockXSize", "BlockYSize")


@dataclass(frozen=True)
class Source:
    """Band ``band`` of ``path`` (relative to the VRT's folder when ``relative``), read from
    ``src_rect`` into ``dst_rect``; ``properties`` (width, height, GDAL data type, block
    width, block height of the file) let GDAL plan reads without opening it. A
    ``ComplexSource`` when ``complex`` or given a ``nodata`` value (pixels of that value
    become the band's NoDataValue) or a ``scale_offset`` (added to every value), else a
    ``SimpleSource``."""

    path: Path | str
    band: int = 1
    relative: bool = False
    src_rect: Rect | None = None
    dst_rect: Rect | None = None
    nodata: float | None = None
    resampling: str | None = None
    scale_offset: float | None = None
    properties: tuple[int, int, str, int, int] | None = None
    complex: bool = False


@dataclass(frozen=True)
class Band:
    """A ``VRTRasterBand``: GDAL data type, sources, and optional description,
    NoDataValue and palette (index -> RGBA; missing indexes are transparent black)."""

    data_type: str
    sources: Sequence[Source]
    description: str | None = None
    nodata: float | None = None
    palette: Mapping[int, Sequence[int]] | None = None


def vrt_document(
    size: tuple[int, int],
    crs_wkt: str | None,
    geotransform: Sequence[float],
    bands: Sequence[Band],
    metadata: Mapping[str, str] | None = None,
) -> ET.Element:
    """The ``VRTDataset`` of ``size`` (width, height) pixels on GDAL's ``geotransform``
    (x0, dx, rx, y0, ry, dy), bands numbered from 1 in order. The SRS has no axis
    mapping, so GDAL takes its axes in GIS order (x, y), as rasterio's grids are."""
    root = ET.Element("VRTDataset", rasterXSize=str(size[0]), rasterYSize=str(size[1]))
    if crs_wkt:
        _text(root, "SRS", crs_wkt)
    _text(root, "GeoTransform", ", ".join(repr(float(v)) for v in geotransform))
    if metadata:
        items = ET.SubElement(root, "Metadata")
        for key, value in metadata.items():
            _text(items, "MDI", value, key=key)
    for number, band in enumerate(bands, start=1):
        element = ET.SubElement(root, "VRTRasterBand", dataType=band.data_type, band=str(number))
        if band.description is not None:
            _text(element, "Description", band.description)
        if band.nodata is not None:
            _text(element, "NoDataValue", repr(band.nodata))
        if band.palette:
            _text(element, "ColorInterp", "Palette")
            table = ET.SubElement(element, "ColorTable")
            for index in range(max(band.palette) + 1):
                rgba = map(str, band.palette.get(index, (0, 0, 0, 0)))
                ET.SubElement(
                    table, "Entry", dict(zip(("c1", "c2", "c3", "c4"), rgba, strict=True))
                )
        for source in band.sources:
            _source(element, source)
    ET.indent(root)
    return root


def _source(band: ET.Element, s: Source) -> None:
    complex_ = s.complex or s.nodata is not None or s.scale_offset is not None
    kind = "ComplexSource" if complex_ else "SimpleSource"
    element = ET.SubElement(band, kind, {"resampling": s.resampling} if s.resampling else {})
    _text(element, "SourceFilename", str(s.path), relativeToVRT=str(int(s.relative)))
    _text(element, "SourceBand", str(s.band))
    if s.properties:
        values = map(str, s.properties)
        ET.SubElement(element, "SourceProperties", dict(zip(_PROPERTIES, values, strict=True)))
    for tag, rect in (("SrcRect", s.src_rect), ("DstRect", s.dst_rect)):
        if rect:
            values = map(repr, rect)
            ET.SubElement(
                element, tag, dict(zip(("xOff", "yOff", "xSize", "ySize"), values, strict=True))
            )
    if s.scale_offset is not None:
        _text(element, "ScaleOffset", repr(s.scale_offset))
        _text(element, "ScaleRatio", "1")
    if s.nodata is not None:
        _text(element, "NODATA", repr(s.nodata))


def _text(parent: ET.Element, tag: str, text: str, **attributes: str) -> None:
    ET.SubElement(parent, tag, attributes).text = text


def write_vrt(document: ET.Element, target: Path) -> Path:
    """Write ``document`` to ``target`` (UTF-8) and return ``target``."""
    ET.ElementTree(document).write(target, encoding="utf-8", xml_declaration=False)
    return target


_SCRATCH: list[Path] = []


def write_scratch_vrt(stem: str, document: ET.Element) -> Path:
    """Write ``document`` to ``<scratch>/<n>/<stem>.vrt`` (a folder each, so that equal
    stems never collide and the output keeps the input's name) and return its path."""
    if not _SCRATCH:
        folder = Path(tempfile.mkdtemp(prefix="eofm-vrt-"))
        atexit.register(shutil.rmtree, folder, True)
        _SCRATCH.append(folder)
    target = _SCRATCH[0] / str(len(list(_SCRATCH[0].iterdir()))) / f"{stem}.vrt"
    target.parent.mkdir(parents=True)
    return write_vrt(document, target)

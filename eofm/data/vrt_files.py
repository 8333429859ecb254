"""What the VRTs eofm writes for its inputs share (Sentinel-2 products stacked by band,
single-date frames stacked by date): GDAL's data type names, and this process's scratch
folder for the files, removed when it exits. The XML follows GDAL's VRT format
(https://gdal.org/drivers/raster/vrt.html)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

#: numpy dtype name -> GDAL data type name.
GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16"}
GDAL_TYPES |= {"uint32": "UInt32", "int32": "Int32", "float32": "Float32", "float64": "Float64"}

_SCRATCH: list[Path] = []


def write_scratch_vrt(stem: str, lines: list[str]) -> Path:
    """Write ``lines`` to ``<scratch>/<n>/<stem>.vrt`` (a folder each, so that equal stems
    never collide and the output keeps the input's name) and return its path."""
    if not _SCRATCH:
        folder = Path(tempfile.mkdtemp(prefix="eofm-vrt-"))
        atexit.register(shutil.rmtree, folder, True)
        _SCRATCH.append(folder)
    target = _SCRATCH[0] / str(len(list(_SCRATCH[0].iterdir()))) / f"{stem}.vrt"
    target.parent.mkdir(parents=True)
    target.write_text("\n".join(lines) + "\n")
    return target

"""The builder every VRT of eofm is written with (eofm.data.vrt_files), read back by rasterio."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import rasterio

from eofm.data.vrt_files import Band, Source, vrt_document, write_vrt
from tests.realdata import CHIPS, make_s2hand_chips


def test_complex_source_nodata_reads_nan_and_names_are_escaped(tmp_path: Path) -> None:
    """A Float32 band whose ComplexSource carries an S2Hand chip's nodata value (GDAL VRT
    format, ``NODATA``) reads NaN where the chip holds it and the chip's values elsewhere;
    a SimpleSource band (relative path) reads its band as it is; XML characters in the
    folder and the description survive, and so do the grid and CRS."""
    root = make_s2hand_chips(tmp_path / "S1 & S2 <chips>", count=1)
    chip = root / "S2Hand" / f"{CHIPS[0]}_S2Hand.tif"
    with rasterio.open(chip) as ds:
        raw, nodata, crs, transform = ds.read(), ds.nodata, ds.crs, ds.transform
        size = (ds.width, ds.height)
    bands = [
        Band("Float32", [Source(chip, 4, nodata=nodata)], "RED & <B4>", math.nan),
        Band("Int16", [Source(os.path.relpath(chip, root), 13, relative=True)], "SWIR_2"),
    ]
    document = vrt_document(size, crs.to_wkt(), transform.to_gdal(), bands)
    with rasterio.open(write_vrt(document, root / "stack.vrt")) as vrt:
        red, swir_2 = vrt.read(1), vrt.read(2)
        assert vrt.descriptions == ("RED & <B4>", "SWIR_2") and vrt.dtypes == ("float32", "int16")
        assert vrt.crs == crs and vrt.transform == transform
        assert math.isnan(vrt.nodatavals[0]) and vrt.nodatavals[1] is None
    empty = raw[3] == nodata
    assert empty.any() and np.isnan(red[empty]).all()
    assert np.array_equal(red[~empty], raw[3][~empty]) and np.array_equal(swir_2, raw[12])

"""Class maps and probabilities finished by GDAL's COG driver from the staged GeoTIFF.

Maps of every shape the engine meets (one tile, smaller than a tile, no CRS, a width
that needs BigTIFF-style offsets, a rotated transform) come out as valid COGs with their
pixels, nodata, georeferencing and overviews down to one block.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

from eofm.predict.cog import COG_BLOCK, staging_profile, write_cog
from eofm.predict.products import CLASS_NODATA, product_profile


def class_map(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Blobs of 3 classes, noise, and a nodata corner: tiles of every kind."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    classes = ((np.sin(yy / 37.0) + np.cos(xx / 23.0)) > 0).astype(np.uint8)
    classes[(yy // 50 + xx // 70) % 5 == 0] = 2
    noise = rng.random((height, width)) < 0.02
    classes[noise] = rng.integers(0, 3, int(noise.sum()))
    classes[: height // 5, : width // 4] = CLASS_NODATA
    return classes


CASES = [
    # (height, width, column band, runs of rows, CRS, transform)
    (900, 1100, 700, [192, 224, 37], "EPSG:32631", from_origin(500000, 5000000, 10, 10)),
    (300, 520, 4096, [192], "EPSG:4326", from_origin(3.0, 52.0, 0.0001, 0.0001)),
    (256, 256, 100, [255, 1], "EPSG:32631", from_origin(0, 2560, 10, 10)),  # one tile
    (80, 100, 64, [13], None, Affine.identity()),  # smaller than a tile, no CRS
    (3, 70000, 8192, [2, 1], "EPSG:3857", from_origin(0, 30, 10, 10)),  # width needs LONG
    (1030, 770, 512, [192], "EPSG:32618", Affine(10, 0.5, 400000, 0.5, -10, 4500000)),
]


def overview_count(height: int, width: int) -> int:
    """GDAL's COG driver halves the map until it fits in one block."""
    count = 0
    while max(height, width) > COG_BLOCK:
        height, width, count = -(-height // 2), -(-width // 2), count + 1
    return count


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize(("height", "width", "band", "runs", "crs", "transform"), CASES)
def test_class_map_cog_of_every_shape(
    tmp_path: Path, height, width, band, runs, crs, transform
) -> None:
    classes = class_map(height, width)
    grid = SimpleNamespace(
        width=width,
        height=height,
        crs=CRS.from_user_input(crs) if crs else None,
        transform=transform,
    )
    staging = tmp_path / "staging.tif"
    profile = staging_profile(grid) | product_profile("classes", 3)
    with rasterio.open(staging, "w", **profile) as out:
        for left in range(0, width, band):  # written as the engine writes: band by band
            right = min(width, left + band)
            top, step = 0, 0
            while top < height:
                rows = min(runs[step % len(runs)], height - top)
                block = classes[None, top : top + rows, left:right]
                out.write(block, window=rasterio.windows.Window(left, top, right - left, rows))
                top, step = top + rows, step + 1
    write_cog(staging, tmp_path / "map.tif", "classes")
    with rasterio.open(tmp_path / "map.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
        assert np.array_equal(ds.read(1), classes)
        assert ds.nodata == CLASS_NODATA
        assert ds.crs == (CRS.from_user_input(crs) if crs else None)
        assert ds.transform.almost_equals(transform)
        assert len(ds.overviews(1)) == overview_count(height, width)
        if ds.overviews(1):  # nearest: every overview pixel is a class or nodata
            assert set(np.unique(ds.read(1, out_shape=(height // 2, width // 2)))) <= {0, 1, 2, 255}

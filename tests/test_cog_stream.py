"""A class map's COG compressed tile by tile while it streams is GDAL's COG, byte for byte.

The reference is GDAL's COG driver run on the finished map (a plain GeoTIFF), as the
previous releases made every class map. Blocks of rows are fed as the engine feeds them:
column band after column band, each top to bottom, in uneven runs of rows, so that tiles
straddle bands and runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.shutil import copy as raster_copy
from rasterio.transform import Affine, from_origin

from eofm.predict import cog_stream
from eofm.predict.cog_stream import cog_header, gdal_header_template, streamed_cog
from eofm.predict.overviews import overview_sizes
from eofm.predict.products import CLASS_NODATA, product_profile

BLOCK = 256


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


def gdal_cog(classes: np.ndarray, profile: dict, path: Path) -> bytes:
    plain = path.with_suffix(".plain.tif")
    with rasterio.open(plain, "w", driver="GTiff", **profile) as out:
        out.write(classes[None])
    raster_copy(
        plain,
        path,
        driver="COG",
        compress="DEFLATE",
        blocksize=BLOCK,
        overview_resampling="nearest",
    )
    return path.read_bytes()


def streamed(classes: np.ndarray, profile: dict, path: Path, band: int, runs: list[int]) -> bytes:
    cog = streamed_cog(path, profile, BLOCK)
    assert cog is not None, "the streamed COG should apply to a uint8 class map"
    height, width = classes.shape
    with cog:
        for left in range(0, width, band):
            right = min(width, left + band)
            top, step = 0, 0
            while top < height:
                rows = runs[step % len(runs)]
                block = classes[top : top + rows, left:right]
                cog.add(np.ascontiguousarray(block)[None], top, left)
                top, step = top + rows, step + 1
        cog.finish()
        assert cog.scratch.exists()
    assert not cog.scratch.exists()
    return path.read_bytes()


def profile_for(height: int, width: int, crs, transform) -> dict:
    profile = {"width": width, "height": height, "transform": transform}
    if crs is not None:
        profile["crs"] = crs
    return profile | product_profile("classes", 3)


CASES = [
    # (height, width, column band, runs of rows, CRS, transform)
    (900, 1100, 700, [192, 224, 37], "EPSG:32631", from_origin(500000, 5000000, 10, 10)),
    (300, 520, 4096, [192], "EPSG:4326", from_origin(3.0, 52.0, 0.0001, 0.0001)),
    (256, 256, 100, [255, 1], "EPSG:32631", from_origin(0, 2560, 10, 10)),  # one tile
    (80, 100, 64, [13], None, Affine.identity()),  # smaller than a tile, no CRS
    (3, 70000, 8192, [2, 1], "EPSG:3857", from_origin(0, 30, 10, 10)),  # width needs LONG
    (1030, 770, 512, [192], "EPSG:32618", Affine(10, 0.5, 400000, 0.5, -10, 4500000)),
]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize(("height", "width", "band", "runs", "crs", "transform"), CASES)
def test_streamed_cog_is_the_file_gdal_makes(
    tmp_path: Path, height, width, band, runs, crs, transform
) -> None:
    classes = class_map(height, width)
    profile = profile_for(height, width, crs, transform)
    ours = streamed(classes, profile, tmp_path / "streamed.tif", band, runs)
    reference = gdal_cog(classes, profile, tmp_path / "gdal.tif")
    assert hashlib.sha256(ours).hexdigest() == hashlib.sha256(reference).hexdigest()
    with rasterio.open(tmp_path / "streamed.tif") as ds:
        assert np.array_equal(ds.read(1), classes)
        assert ds.nodata == CLASS_NODATA
        assert ds.crs == (CRS.from_user_input(crs) if crs else None)
        levels = overview_sizes(height, width, BLOCK)
        assert len(ds.overviews(1)) == len(levels)


def test_the_header_is_gdal_s_for_every_level(tmp_path: Path) -> None:
    """The header made from a 1 x 1 template equals GDAL's own header, tile arrays aside."""
    height, width = 2000, 1500
    classes = class_map(height, width, seed=3)
    profile = profile_for(height, width, "EPSG:32631", from_origin(500000, 5000000, 20, 20))
    reference = bytearray(gdal_cog(classes, profile, tmp_path / "gdal.tif"))
    sizes = cog_stream.level_sizes(height, width, BLOCK)
    header = cog_header(gdal_header_template(profile, BLOCK), sizes, BLOCK)
    assert header is not None
    for offsets, counts in cog_stream.tile_arrays(bytes(reference[: len(header)])):
        assert len(offsets) == len(counts)
    blank = bytearray(reference[: len(header)])
    for ifd in cog_stream._tiff_entries(bytes(blank)):
        for tag in (324, 325):
            _, n, value, at = ifd[tag]
            where = at + 8 if n == 1 else value
            blank[where : where + 4 * n] = bytes(4 * n)
    assert bytes(blank) == header


def test_gdal_s_copy_is_kept_where_the_bytes_could_differ(tmp_path: Path, monkeypatch) -> None:
    """No libdeflate level reproduces GDAL's tiles (e.g. a GDAL built on zlib), or the map
    is not one uint8 band: no streamed COG, so the engine stages and copies as before."""
    profile = profile_for(300, 300, "EPSG:32631", from_origin(0, 3000, 10, 10))
    assert streamed_cog(tmp_path / "a.tif", profile | {"dtype": "float32"}, BLOCK) is None
    assert streamed_cog(tmp_path / "a.tif", profile | {"count": 2}, BLOCK) is None
    monkeypatch.setattr(cog_stream, "gdal_deflate_level", lambda library, blocksize: None)
    assert streamed_cog(tmp_path / "a.tif", profile, BLOCK) is None


def test_a_template_with_unknown_tags_is_not_extended() -> None:
    """A first IFD holding a tag this module does not lay out (here Software, 305) makes
    no header: GDAL's copy is used instead of guessing."""
    profile = profile_for(300, 300, "EPSG:32631", from_origin(0, 3000, 10, 10))
    template = bytearray(gdal_header_template(profile, BLOCK))
    ifd = cog_stream._tiff_entries(bytes(template))[0]
    _, _, _, at = ifd[339]  # SampleFormat becomes Software (305)
    template[at : at + 2] = (305).to_bytes(2, "little")
    assert cog_header(bytes(template), [(300, 300), (150, 150)], BLOCK) is None


def test_the_probe_finds_the_level_gdal_compresses_at() -> None:
    """The probe finds a libdeflate level whose bytes are GDAL's (here, where rasterio
    bundles libdeflate); a tile compressed at it decompresses to the tile."""
    import zlib

    library = cog_stream._loaded_libdeflate()
    assert library is not None
    level = cog_stream.gdal_deflate_level(library, BLOCK)
    assert level in cog_stream.LIBDEFLATE_LEVELS
    tile = cog_stream.probe_tile(BLOCK)
    data = cog_stream.Deflate(library, level).compress(tile)
    assert zlib.decompress(data) == tile.tobytes()

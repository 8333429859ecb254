"""Cloud-Optimized GeoTIFFs made by GDAL's COG driver from a streamed, tiled GeoTIFF.

The engine streams each product into an uncompressed tiled GeoTIFF (blocks of
``COG_BLOCK``), then GDAL's COG driver lays out the final file: DEFLATE-compressed tiles
with every core compressing, and overviews down to one block, nearest for class maps
(a class is never averaged) and averaged for probabilities and uncertainties. See
https://gdal.org/drivers/raster/cog.html.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COG_BLOCK = 256
#: GDAL's block cache while a COG is laid out: bounded, so memory stays flat in scene size.
CACHE_BYTES = 64 << 20


def staging_profile(source: Any) -> dict[str, Any]:
    """The profile of a staging GeoTIFF over the grid of the open dataset ``source``."""
    return {
        "driver": "GTiff",
        "width": source.width,
        "height": source.height,
        "crs": source.crs,
        "transform": source.transform,
        "tiled": True,
        "blockxsize": COG_BLOCK,
        "blockysize": COG_BLOCK,
        "BIGTIFF": "IF_SAFER",
    }


def write_cog(staging: Path, target: Path, kind: str, threads: int | str = "ALL_CPUS") -> None:
    """Copy ``staging`` to ``target`` as a COG of the product ``kind``, compressing on
    ``threads`` threads: one while the next scene streams on the other cores (more
    would contend with the stream; ``benchmarks/predict_pipeline.py`` measures it),
    every core when nothing else runs."""
    import rasterio
    from rasterio.shutil import copy as raster_copy

    with rasterio.Env(GDAL_CACHEMAX=CACHE_BYTES):
        raster_copy(
            staging,
            target,
            driver="COG",
            compress="DEFLATE",
            blocksize=COG_BLOCK,
            overview_resampling="nearest" if kind == "classes" else "average",
            num_threads=threads,
        )

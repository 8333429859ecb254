"""Class maps -> polygons with areas, read block by block (never the whole scene)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

BLOCK_ROWS = 2048
EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global, for areas in m²


def write_polygons(
    raster: Path,
    target: Path,
    class_names: Sequence[str],
    fmt: str,
    *,
    layer: str | None = None,
) -> int:
    """Polygonise every non-background class of ``raster`` into GeoParquet or GeoJSON.

    ``layer`` names the GeoJSON layer (its ``name`` member; default: ``target``'s stem),
    so a file written to a temporary name and renamed is named after its output.

    Each block of rows is polygonised with rasterio; polygons that touch across block
    edges are merged afterwards, so results do not depend on the block size. Returns the
    number of polygons. ``area_m2`` is computed in an equal-area CRS when the map's CRS is
    geographic, and in the map's own (metric) units otherwise.
    """
    import geopandas as gpd
    import rasterio
    from rasterio.features import shapes
    from rasterio.windows import Window
    from shapely.geometry import shape
    from shapely.ops import unary_union

    geoms: dict[int, list] = {}
    with rasterio.open(raster) as ds:
        crs = ds.crs
        for top in range(0, ds.height, BLOCK_ROWS):
            window = Window(0, top, ds.width, min(BLOCK_ROWS, ds.height - top))
            block, valid = _classes(ds, window)
            positive = valid & (block != 0)
            if not positive.any():
                continue
            for geom, value in shapes(block, mask=positive, transform=ds.window_transform(window)):
                geoms.setdefault(int(value), []).append(shape(geom))
    rows = []
    for value, parts in sorted(geoms.items()):
        merged = unary_union(parts)
        for polygon in getattr(merged, "geoms", [merged]):
            name = class_names[value] if value < len(class_names) else str(value)
            rows.append({"class_id": value, "class_name": name, "geometry": polygon})
    frame = gpd.GeoDataFrame(
        rows, columns=["class_id", "class_name", "geometry"], geometry="geometry", crs=crs
    )
    if len(frame) and crs is not None:
        metric = frame.to_crs(EQUAL_AREA_CRS) if frame.crs.is_geographic else frame
        frame["area_m2"] = metric.geometry.area.to_numpy()
    else:
        frame["area_m2"] = np.asarray(frame.geometry.area, dtype=float) if len(frame) else []
    if fmt in ("parquet", "geoparquet"):
        frame.to_parquet(target)
    else:
        frame.to_file(target, driver="GeoJSON", layer=layer or Path(target).stem)
    return len(frame)


def _classes(ds, window) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and validity of a block: a class map, or the argmax of a probability map."""
    if ds.dtypes[0] == "uint8":
        block = ds.read(1, window=window)
        return block, block != ds.nodata
    probs = ds.read(window=window)
    valid = np.isfinite(probs).all(axis=0)
    return np.where(valid, np.nan_to_num(probs).argmax(axis=0), 0).astype(np.uint8), valid

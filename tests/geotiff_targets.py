"""Image/target GeoTIFF pairs (``data.name: geotiff_targets``), generated small, for tests.

``image/<stem>.tif``: 6 int16 HLS bands (BLUE .. SWIR_2, reflectance x 10000), nodata
-9999 with one invalid pixel; ``target/<stem>.tif``: float32 canopy height in metres,
nodata -9999 over its first 4 rows; both on one UTM grid of 30 m pixels. The height is
a planted linear function of the red and NIR bands, so a tiny model can learn something.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

SIZE = 32
NODATA = -9999.0
STEMS = [f"tile_{i:02d}" for i in range(6)]


def profile(count: int, dtype: str, *, left: float = 500000.0) -> dict:
    return {
        "driver": "GTiff", "dtype": dtype, "count": count, "height": SIZE, "width": SIZE,
        "crs": "EPSG:32610", "transform": Affine(30.0, 0.0, left, 0.0, -30.0, 4200000.0),
        "nodata": NODATA,
    }  # fmt: skip


def planted_height(image: np.ndarray) -> np.ndarray:
    """Height in metres from the red (band 3) and NIR (band 4) reflectance x 10000."""
    return (image[3] - image[2]) / 100.0


def make_pairs(root: Path, stems: list[str] = STEMS, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for stem in stems:
        image = rng.integers(200, 4000, size=(6, SIZE, SIZE)).astype(np.int16)
        image[3] = np.clip(image[2] + rng.integers(0, 3000, size=(SIZE, SIZE)), 0, 9999)
        target = planted_height(image.astype(np.float32)).astype(np.float32)
        target[:4] = NODATA
        image[:, -1, -1] = int(NODATA)
        write(root / "image" / f"{stem}.tif", image, profile(6, "int16"))
        write(root / "target" / f"{stem}.tif", target[None], profile(1, "float32"))
    return root


def write(path: Path, data: np.ndarray, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(data)

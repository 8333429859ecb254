"""HLS Burn Scars scenes in the released layout, for tests.

The masks are crops of the real mask in ../shared/data/hls (int16, -1/0/1, its custom UTM
WKT and 30 m transform). The released 6-band ``_merged.tif`` images are not available
offline, so they are generated in the released format (6 bands BLUE..SWIR_2, float32
reflectance 0..1, the mask's grid) with a planted burn signal: burned pixels have low NIR
and high SWIR, as burn scars do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

SHARED_MASK = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "hls"
    / "subsetted_512x512_HLS.S30.T10TGS.2018285.v1.4.mask.tif"
)
#: (folder, MGRS tile, YYYYDDD, row, col) of each generated scene
SCENES = [
    ("training", "T10TGS", "2018285", 200, 180),
    ("training", "T10SEH", "2018190", 260, 240),
    ("training", "T11SKA", "2019201", 150, 300),
    ("validation", "T10TGS", "2019240", 230, 200),
    ("validation", "T12RUV", "2020215", 280, 260),
]


def make_hls_root(root: Path, size: int = 64, *, drop_mask: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    with rasterio.open(SHARED_MASK) as ds:
        profile = ds.profile
        for folder, tile, date, row, col in SCENES:
            window = Window(col, row, size, size)
            mask = ds.read(1, window=window)
            transform = ds.window_transform(window)
            scene = f"subsetted_512x512_HLS.S30.{tile}.{date}.v1.4"
            out = root / folder
            out.mkdir(parents=True, exist_ok=True)
            common = profile | {
                "width": size,
                "height": size,
                "transform": transform,
                "tiled": False,
            }
            common.pop("blockxsize", None)
            common.pop("blockysize", None)
            if scene != drop_mask:
                with rasterio.open(out / f"{scene}.mask.tif", "w", **common) as dst:
                    dst.write(mask, 1)
            base = np.array([0.04, 0.07, 0.08, 0.28, 0.22, 0.14], np.float32)[:, None, None]
            image = base + rng.normal(0, 0.02, (6, size, size)).astype(np.float32)
            burned = mask == 1
            image[3][burned] -= 0.15  # NIR drops
            image[5][burned] += 0.10  # SWIR 2 rises
            image_profile = common | {"count": 6, "dtype": "float32", "nodata": None}
            image_profile.pop("compress", None)
            with rasterio.open(out / f"{scene}_merged.tif", "w", **image_profile) as dst:
                dst.write(np.clip(image, 0, 1))
    return root

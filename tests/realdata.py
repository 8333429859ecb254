"""Real Sen1Floods11 chips from ../shared/data, and small crops of them for fast tests."""

from __future__ import annotations

from pathlib import Path

import rasterio
from rasterio.windows import Window

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sen1floods11"
CHIPS = [
    "Ghana_97059",
    "India_900498",
    "Nigeria_812045",
    "Spain_6860600",
    "Sri-Lanka_534068",
    "Paraguay_34417",  # image entirely NaN: reported and left out of training
]


def crop_chip(src: Path, dst: Path, size: int = 64) -> None:
    with rasterio.open(src) as ds:
        window = Window(ds.width // 2 - size // 2, ds.height // 2 - size // 2, size, size)
        profile = ds.profile | {
            "width": size,
            "height": size,
            "transform": ds.window_transform(window),
            "tiled": False,
        }
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        data = ds.read(window=window)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)

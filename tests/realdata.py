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


def make_s2hand_chips(root: Path, count: int = 5) -> Path:
    """S2Hand chips in the real format (13 bands, int16, nodata 0) next to real labels.

    The shared data has no S2Hand chips, so the reflectances are generated; the labels,
    grids and CRS are the real chips'.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    for chip in CHIPS[:count]:
        label_path = root / "LabelHand" / f"{chip}_LabelHand.tif"
        crop_chip(SHARED / "LabelHand" / f"{chip}_LabelHand.tif", label_path)
        with rasterio.open(label_path) as label:
            profile = label.profile | {"count": 13, "dtype": "int16", "nodata": 0}
        data = rng.integers(1, 4000, size=(13, 64, 64), dtype=np.int16)
        data[:, :3, :3] = 0  # nodata corner
        (root / "S2Hand").mkdir(parents=True, exist_ok=True)
        with rasterio.open(root / "S2Hand" / f"{chip}_S2Hand.tif", "w", **profile) as out:
            out.write(data)
    return root

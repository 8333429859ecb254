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


#: The 13 bands of an S2Hand chip, in file order (Sen1Floods11 README: B1 .. B12 with B8A).
S2HAND_CODES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def s2hand_chip_from_landsat(landsat: Path, dst: Path, size: int = 64) -> tuple[Path, Path]:
    """An S2Hand-layout chip (13 bands, int16, nodata 0, no band descriptions) whose B2, B3,
    B4 are a real Landsat 8 scene's blue, green and red (``landsat`` holds B2, B3, B4), and
    the 3-band crop of the same window. The other 10 bands repeat the real bands' mean, so
    every value is real or derived from real values."""
    import numpy as np

    with rasterio.open(landsat) as ds:
        window = Window(ds.width // 2, ds.height // 2, size, size)
        rgb = ds.read(window=window)
        profile = ds.profile | {
            "width": size,
            "height": size,
            "transform": ds.window_transform(window),
            "tiled": False,
        }
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    rgb = np.clip(rgb, 1, np.iinfo(np.int16).max).astype(np.int16)
    chip = np.repeat(rgb.mean(axis=0, dtype=np.float64)[None], 13, axis=0).astype(np.int16)
    chip[1:4] = rgb  # B2, B3, B4
    chip[:, :3, :3] = 0  # a nodata corner, as chips at a scene's edge have
    rgb[:, :3, :3] = 0
    dst.mkdir(parents=True, exist_ok=True)
    s2hand, three = dst / "Landsat_1_S2Hand.tif", dst / "Landsat_1_rgb.tif"
    with rasterio.open(
        s2hand, "w", **(profile | {"count": 13, "dtype": "int16", "nodata": 0})
    ) as out:
        out.write(chip)
    with rasterio.open(
        three, "w", **(profile | {"count": 3, "dtype": "int16", "nodata": 0})
    ) as out:
        out.write(rgb)
    return s2hand, three


def make_s1s2_chips(root: Path, count: int = 5) -> Path:
    """Chips with both S1Hand and S2Hand files, as the release has them: the real S1Hand
    chips and labels (cropped to 64 px), and S2Hand chips of :func:`make_s2hand_chips`
    (generated reflectances in the real format, on the same grid)."""
    make_s2hand_chips(root, count)
    for chip in CHIPS[:count]:
        crop_chip(SHARED / "S1Hand" / f"{chip}_S1Hand.tif", root / "S1Hand" / f"{chip}_S1Hand.tif")
    return root

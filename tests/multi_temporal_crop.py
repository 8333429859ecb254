"""Multi-temporal crop classification chips in the released layout, for tests.

Generated as the release stores them (see ``eofm/data/multi_temporal_crop_layout.py``):
``training_chips/`` and ``validation_chips/`` holding ``chip_XXX_YYY_merged.tif`` (18
bands, the 6 HLS bands of each of 3 dates, frame-major) and ``chip_XXX_YYY.mask.tif``
(one band, 0 no data, 1..13 the CDL classes), and the ``training_data.txt`` /
``validation_data.txt`` lists of chip ids at the root. The release's chips are 224 px in
EPSG:5070 (CONUS Albers, the CDL grid the chips were cut from) at 30 m; these are
``size`` px. Pixels hold HLS surface reflectance x 10000 as int16 with HLS's fill value
-9999 as nodata. A crop signal is planted: each class has its own NIR trajectory over
the three dates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

#: (split folder, chip id): ids as the release names them (row and column of its grid)
CHIPS = [
    ("training_chips", "chip_090_484"),
    ("training_chips", "chip_177_428"),
    ("training_chips", "chip_106_429"),
    ("validation_chips", "chip_312_160"),
    ("validation_chips", "chip_198_312"),
]
LISTS = {"training_chips": "training_data.txt", "validation_chips": "validation_data.txt"}
CRS = "EPSG:5070"
#: HLS means of the card's fine-tuning config (BLUE .. SWIR_2, reflectance x 10000)
BASE = np.array([494.9, 815.2, 924.3, 2968.9, 2634.6, 1739.6], np.float32)
#: NIR trajectory (x BASE) over the 3 dates of each planted class (mask values 1, 3, 4)
TRAJECTORIES = {1: (1.0, 1.0, 1.0), 3: (0.6, 1.5, 0.8), 4: (0.7, 0.9, 1.6)}


def make_crop_root(
    root: Path, size: int = 32, *, bands: int = 18, mask_value: int | None = None
) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    listed: dict[str, list[str]] = {folder: [] for folder in LISTS}
    for n, (folder, chip) in enumerate(CHIPS):
        out = root / folder
        out.mkdir(exist_ok=True)
        transform = from_origin(-500_000 + n * 10_000, 2_000_000, 30, 30)
        mask = np.ones((size, size), np.uint8)
        mask[:, size // 3 : 2 * size // 3] = 3
        mask[:, 2 * size // 3 :] = 4
        mask[:2] = 0  # "No Data"
        if mask_value is not None and n == 1:
            mask[5, 5] = mask_value
        count = bands if n == 1 else 18  # ``bands``: the second chip's band count
        image = np.empty((count, size, size), np.float32)
        for i in range(count):
            t, b = divmod(i, 6)
            image[i] = BASE[b] * (1 + rng.normal(0, 0.05, (size, size)))
            if b == 3 and t < 3:
                for value, trajectory in TRAJECTORIES.items():
                    image[i][mask == value] *= trajectory[t]
        image = np.round(image).astype(np.int16)
        image[:, 0, :3] = -9999  # a few fill pixels
        common = {
            "driver": "GTiff",
            "width": size,
            "height": size,
            "crs": CRS,
            "transform": transform,
        }
        with rasterio.open(
            out / f"{chip}_merged.tif", "w", count=count, dtype="int16", nodata=-9999, **common
        ) as dst:
            dst.write(image)
        with rasterio.open(out / f"{chip}.mask.tif", "w", count=1, dtype="uint8", **common) as dst:
            dst.write(mask, 1)
        listed[folder].append(chip)
    for folder, name in LISTS.items():
        (root / name).write_text("".join(f"{chip}\n" for chip in listed[folder]))
    return root


def single_date_scenes(stack: Path, folder: Path, dates: list[str]) -> list[Path]:
    """The frames of a stack as single-date 6-band scenes named by date, each with its
    acquisition date in its tags (as HLS scenes record ``SENSING_TIME``)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with rasterio.open(stack) as ds:
        profile = ds.profile | {"count": 6}
        for t, date in enumerate(dates):
            path = folder / f"HLS_{date}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(ds.read(list(range(6 * t + 1, 6 * t + 7))))
                dst.update_tags(SENSING_TIME=f"{date}T17:00:00Z")
            out.append(path)
    return out

"""EuroSAT MS in the released layout, generated small, for tests.

The layout is the one torchgeo 0.8.1's ``EuroSAT`` reads from the release
(``EuroSATallBands.zip``, hf.co/datasets/torchgeo/eurosat): the class folders under
``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/``, chips named
``<Class>_<n>.tif`` (64 x 64 px, 13 uint16 bands B01 .. B12, B8A, LZW, a UTM CRS and a
~10 m transform, as torchgeo's own test data ``tests/data/eurosat/data.py`` writes them),
and the split lists ``eurosat-{train,val,test}.txt`` whose lines name the chips as
``<Class>_<n>.jpg`` (the lists of Neumann et al. 2019, made for the RGB release).
Each class gets a planted spectrum (torchgeo's band means shifted by a class pattern of
band standard deviations), so a tiny model can learn something.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from eofm.data.eurosat_config import EUROSAT_CLASSES, EUROSAT_FILE_CODES, EUROSAT_IMAGE_DIR

#: Chips per class in each split.
PER_SPLIT = {"train": 2, "val": 1, "test": 1}


def write_chip(path: Path, image: np.ndarray) -> None:
    """One chip as the release stores it: uint16, LZW, EPSG:32635, ~10 m pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": image.shape[0],
        "height": image.shape[1],
        "width": image.shape[2],
        "crs": "EPSG:32635",
        "transform": Affine(10.00570688714736, 0.0, 624602.23, 0.0, -9.9940881, 4877286.03),
        "compress": "lzw",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image.astype(np.uint16))


def make_eurosat(
    root: Path,
    *,
    classes: tuple[str, ...] = EUROSAT_CLASSES,
    per_split: dict[str, int] = PER_SPLIT,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write the release's folders, chips and split lists under ``root``."""
    from torchgeo.datamodules.eurosat import MEAN, STD

    mean = np.array([MEAN[c] for c in EUROSAT_FILE_CODES])
    std = np.array([STD[c] for c in EUROSAT_FILE_CODES])
    rng = np.random.default_rng(seed)
    images = root / EUROSAT_IMAGE_DIR
    lists: dict[str, list[str]] = {split: [] for split in per_split}
    for k, name in enumerate(classes):
        shift = np.sin(np.arange(13) * (k + 1))  # a per-class spectrum, in band stds
        signature = mean + shift * std
        number = 0
        for split, count in per_split.items():
            for _ in range(count):
                number += 1
                noise = rng.normal(0, 0.3, (13, size, size)) * std[:, None, None]
                image = signature[:, None, None] + noise
                write_chip(images / name / f"{name}_{number}.tif", np.clip(image, 0, 10000))
                lists[split].append(f"{name}_{number}.jpg")
    for split, names in lists.items():
        (root / f"eurosat-{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return root

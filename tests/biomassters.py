"""BioMassters in the released layout, generated small, for tests.

The layout is the one torchgeo 0.8.1's ``BioMassters`` reads (hf.co/datasets/torchgeo/
biomassters; ``torchgeo/datasets/biomassters.py``, its test data
``tests/data/biomassters/``): ``biomassters_features_metadata.csv`` with the release's
columns (month by name, September first), ``train_features/<chip>_S1_<MM>.tif`` (4 float32
bands in dB, -9999 where missing), ``train_features/<chip>_S2_<MM>.tif`` (11 uint16 bands,
the last the cloud probability), ``train_agbm/<chip>_agbm.tif`` (float32 Mg/ha) and a
``test_features/`` chip without target. Chips are 32 px, not the release's 256: torchgeo
reads any size. One chip has no S2 file for its second month, as the release lacks S2
for some months, so torchgeo leaves that month out. The biomass is a planted function of
S2's red and NIR bands, so a tiny model can learn something.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

SIZE = 32
MONTHS = ("September", "October", "November", "December", "January", "February", "March",
          "April", "May", "June", "July", "August")  # fmt: skip
TRAIN_CHIPS = ("0003d2eb", "000aa810", "0012f3c7", "00a0b4e1", "00c3e5f8", "01d2a9b0")
TEST_CHIPS = ("0a1b2c3d",)
#: (chip, month) pairs without an S2 file.
NO_S2 = {("000aa810", 1)}
COLUMNS = ["filename", "chip_id", "satellite", "split", "month", "size", "cksum",
           "s3path_us", "s3path_eu", "s3path_as", "corresponding_agbm"]  # fmt: skip


def _write(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "dtype": data.dtype.name, "count": data.shape[0], "height": SIZE,
        "width": SIZE, "crs": "EPSG:32635", "transform": Affine(10, 0, 400000, 0, -10, 6900000),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def planted_agb(s2: np.ndarray) -> np.ndarray:
    """Biomass (Mg/ha) from S2's red (band 3) and NIR (band 7)."""
    return np.maximum(s2[6].astype(np.float32) - s2[2].astype(np.float32), 0) / 20.0


def make_biomassters(root: Path, months: tuple[int, ...] = (0, 1), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for split, chips in (("train", TRAIN_CHIPS), ("test", TEST_CHIPS)):
        for chip in chips:
            s2_first = None
            for month in months:
                for satellite in ("S1", "S2"):
                    if satellite == "S2" and (chip, month) in NO_S2:
                        continue
                    if satellite == "S1":
                        data = rng.uniform(-25, -3, size=(4, SIZE, SIZE)).astype(np.float32)
                        data[:, 0, 0] = -9999.0
                    else:
                        data = rng.integers(100, 3000, size=(11, SIZE, SIZE)).astype(np.uint16)
                        data[6] = data[2] + rng.integers(0, 4000, size=(SIZE, SIZE))
                        data[10] = rng.integers(0, 100, size=(SIZE, SIZE))
                        s2_first = data if s2_first is None else s2_first
                    name = f"{chip}_{satellite}_{month:02d}.tif"
                    _write(root / f"{split}_features" / name, data)
                    rows.append([name, chip, satellite, split, MONTHS[month], 0, 0, "s3://us",
                                 "s3://eu", "s3://as", f"{chip}_agbm.tif"])  # fmt: skip
            if split == "train":
                _write(root / "train_agbm" / f"{chip}_agbm.tif", planted_agb(s2_first)[None])
    with open(root / "biomassters_features_metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return root

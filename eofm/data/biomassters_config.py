"""The ``data`` keys of BioMassters (``data.name: biomassters``); see ``biomassters.py``.

The layout is the release torchgeo 0.8.1 reads (``torchgeo/datasets/biomassters.py``,
``BioMassters``; Nascetti et al., "BioMassters: A Benchmark Dataset for Forest Biomass
Estimation using Multi-modal Satellite Time-series", NeurIPS 2023 Datasets and
Benchmarks; hf.co/datasets/torchgeo/biomassters), under ``data.root``::

    biomassters_features_metadata.csv   filename, chip_id, satellite (S1|S2), split
                                        (train|test), month (September .. August), size,
                                        cksum, s3path_us, s3path_eu, s3path_as,
                                        corresponding_agbm
    train_features/<chip_id>_S1_<MM>.tif   Sentinel-1: 4 float32 bands in dB, VV and VH of
                                           the ascending orbit, then of the descending one;
                                           -9999 where missing
    train_features/<chip_id>_S2_<MM>.tif   Sentinel-2 L2A: 11 uint16 bands B2, B3, B4, B5,
                                           B6, B7, B8, B8A, B11, B12 and the cloud
                                           probability (CLP)
    train_agbm/<chip_id>_agbm.tif          above-ground biomass, float32, Mg/ha

``MM`` is the month from ``00`` (September) to ``11`` (August); chips are 256 x 256 px of
10 m over Finnish forests. torchgeo gives targets for the ``train`` split only, so eofm
divides it into train/val/test by chip (every month of a chip in one split). Everything
here is light: the CSV (with the ``csv`` module) and file listings.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from eofm.data.config import DataConfig, check_bands_and_statistics
from eofm.errors import RecipeError
from eofm.typed_config import option

#: torchgeo's ``BioMassters.metadata_filename``.
METADATA_FILE = "biomassters_features_metadata.csv"
#: The columns of the metadata CSV that torchgeo reads.
METADATA_COLUMNS = ("filename", "chip_id", "satellite", "split", "month", "corresponding_agbm")
#: The bands of an S1 file, in file order, by orbit (eofm names VV and VH once each).
S1_FILE_BANDS = {"ascending": (0, 1), "descending": (2, 3)}
S1_BAND_COUNT = 4
#: The optical bands of an S2 file, in file order (its 11th band is the cloud probability).
S2_FILE_BANDS: tuple[str, ...] = (
    "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
    "NIR_NARROW", "SWIR_1", "SWIR_2",
)  # fmt: skip
S2_BAND_COUNT = 11
#: What a sample stacks, in order: S1 VV and VH (of ``data.s1_orbit``), then S2's bands.
BIOMASSTERS_BANDS: tuple[str, ...] = ("VV", "VH", *S2_FILE_BANDS)
S1_MISSING = -9999.0
CHIP_SIZE = 256


def sensors_for(bands: list[str]) -> list[str]:
    """The sensors whose files ``bands`` need (torchgeo's ``sensors``)."""
    return [s for s, names in (("S1", ("VV", "VH")), ("S2", S2_FILE_BANDS))
            if any(b in names for b in bands)]  # fmt: skip


@dataclass
class BioMasstersConfig(DataConfig):
    """BioMassters read by ``torchgeo.datasets.BioMassters``: one sample per chip and
    month with both sensors (torchgeo's ``as_time_series=False``), the chip's AGB target."""

    bands: list[str] = option(
        help=f"bands the model reads, of {list(BIOMASSTERS_BANDS)} (S1 VV, VH; S2)",
        factory=lambda: ["VV", "VH", "BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"],
    )
    s1_orbit: Literal["ascending", "descending"] = option(
        "ascending", "the Sentinel-1 orbit whose VV and VH the model reads"
    )
    hflip: bool = option(True, "random horizontal flips in training")
    mean: list[float] | None = option(None, "per-band mean (default: training statistics)")
    std: list[float] | None = option(None, "per-band std (default: as data.mean)")

    def split_description(self) -> str:
        return (
            "the release's labelled train split divided by chip (hash order), fractions "
            f"{self.split_fractions} (train/val/test)."
        )

    def validate(self, where: str) -> None:
        super().validate(where)
        check_bands_and_statistics(self, where, BIOMASSTERS_BANDS, "BioMassters")

    def check_files(self, where: str) -> None:
        """The metadata CSV (its columns), and every train file it lists for the sensors
        used, with each chip's AGB target: one error naming the first missing file."""
        super().check_files(where)
        root = Path(self.root)
        metadata = root / METADATA_FILE
        for path in (metadata, root / "train_features", root / "train_agbm"):
            if not path.exists():
                raise RecipeError(
                    f"data.root {root} in {where} lacks {path.name} (the BioMassters release: "
                    f"{METADATA_FILE}, train_features/ and train_agbm/, as torchgeo reads it)."
                )
        with open(metadata, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in METADATA_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RecipeError(f"{metadata} lacks the column(s) {missing} torchgeo reads.")
            sensors = sensors_for(self.bands)
            rows = [r for r in reader if r["split"] == "train" and r["satellite"] in sensors]
        if not rows:
            raise RecipeError(f"{metadata} lists no train file of {sensors}.")
        targets = set()
        for row in rows:
            feature = root / "train_features" / row["filename"]
            if not feature.is_file():
                raise RecipeError(f"{feature} is listed in {metadata} but missing.")
            targets.add(row["corresponding_agbm"])
        for name in sorted(targets):
            if not (root / "train_agbm" / name).is_file():
                raise RecipeError(
                    f"{root / 'train_agbm' / name} (the AGB target {metadata} names) is missing."
                )

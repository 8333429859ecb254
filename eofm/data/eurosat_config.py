"""The ``data`` keys of EuroSAT MS (``data.name: eurosat``); see ``eurosat.py``.

The layout is the release torchgeo 0.8.1 reads (``torchgeo/datasets/eurosat.py``,
``EuroSAT``): ``EuroSATallBands.zip`` unpacked under ``data.root`` as
``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif``
(64 x 64 px, 13 uint16 bands in the order B01 .. B12, B8A), beside the split lists
``eurosat-{train,val,test}.txt`` (or ``eurosat-spatial-*.txt``) whose lines name chips
as ``<Class>_<n>.jpg``. Class labels are the class folders in sorted order
(torchvision's ``ImageFolder``). Everything here is light: folder listings only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from eofm.bands import SENTINEL2_CODES
from eofm.data.config import DataConfig, check_bands_and_statistics
from eofm.errors import EofmError, RecipeError
from eofm.typed_config import option

#: The 13 bands of a EuroSAT MS chip in file order (torchgeo's ``EuroSAT.all_band_names``).
EUROSAT_FILE_CODES: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip
#: The same bands by eofm's names.
EUROSAT_BANDS: tuple[str, ...] = tuple(
    SENTINEL2_CODES[c.replace("B0", "B")] for c in EUROSAT_FILE_CODES
)
#: The 10 class folders of the release, in label order (sorted, as ``ImageFolder`` reads them).
EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
    "PermanentCrop", "Residential", "River", "SeaLake",
)  # fmt: skip
#: Where the class folders lie under ``data.root`` (torchgeo's ``EuroSAT.base_dir``).
EUROSAT_IMAGE_DIR = Path("ds", "images", "remote_sensing", "otherDatasets", "sentinel_2", "tif")
#: The release's archive, unpacked by torchgeo when the folder is missing.
EUROSAT_ARCHIVE = "EuroSATallBands.zip"
#: The split lists of each split scheme (torchgeo's ``EuroSAT`` / ``EuroSATSpatial``).
EUROSAT_SPLIT_FILES: dict[str, dict[str, str]] = {
    "official": {s: f"eurosat-{s}.txt" for s in ("train", "val", "test")},
    "spatial": {s: f"eurosat-spatial-{s}.txt" for s in ("train", "val", "test")},
}


@dataclass
class EuroSATConfig(DataConfig):
    """EuroSAT MS chips read by ``torchgeo.datasets.EuroSAT`` (Helber et al., "EuroSAT: A
    Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover
    Classification", IEEE JSTARS 2019)."""

    #: A chip has one label of the classes (softmax), not a set of them.
    multilabel: ClassVar[bool] = False

    bands: list[str] = option(
        help="bands the model reads, by name, of the 13 in a chip (default: all)",
        factory=lambda: list(EUROSAT_BANDS),
    )
    splits: Literal["official", "spatial"] = option(
        "official",
        "official: the split lists of Neumann et al. 2019 (torchgeo EuroSAT); spatial: "
        "by longitude (torchgeo EuroSATSpatial)",
    )
    mean: list[float] | None = option(
        None, "per-band mean (default: the backbone's, else torchgeo's EuroSAT statistics)"
    )
    std: list[float] | None = option(None, "per-band std (default: as data.mean)")
    flips: bool = option(True, "random horizontal and vertical flips in training")
    download: bool = option(
        False, "let torchgeo download the release into data.root when it is missing"
    )
    checksum: bool = option(False, "torchgeo checks the MD5 of what it downloads")

    def split_description(self) -> str:
        """How the chips were split, in a sentence (for model cards)."""
        if self.splits == "spatial":
            return "torchgeo's EuroSATSpatial split lists (by longitude, 60/20/20)."
        return "the official split lists (eurosat-train/val/test.txt, 16200/5400/5400 chips)."

    def validate(self, where: str) -> None:
        super().validate(where)
        check_bands_and_statistics(self, where, EUROSAT_BANDS, "EuroSAT MS")

    def split_paths(self) -> dict[str, Path]:
        """The split list of each split under ``data.root``."""
        return {s: Path(self.root) / f for s, f in EUROSAT_SPLIT_FILES[self.splits].items()}

    def class_folders(self) -> list[str]:
        """The class folders present under ``data.root`` (sorted: label order)."""
        images = Path(self.root) / EUROSAT_IMAGE_DIR
        return sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []

    def chip_files(self, inputs: list[str]) -> list[Path]:
        """The chips ``eofm predict`` reads: GeoTIFF files, folders of them, or globs."""
        return expand_files(inputs, CHIP_SUFFIXES)

    def check_chip(self, chip: Path, file_bands: list[str], chip_size: list[int]) -> bool:
        """A chip must hold the bands of the training chips, at their size or larger (its
        header); returns whether it is a scene (larger: mapped by a sliding window)."""
        return check_geotiff_chip(chip, file_bands, chip_size)

    def file_bands(self) -> list[str]:
        """The bands of a chip file, in file order."""
        return list(EUROSAT_BANDS)

    def check_labels(self, class_names: list[str], where: str) -> None:
        """The class folders are the labels (sorted: label order); each must be in
        ``task.class_names``, in the same order: one error naming the folder or the key."""
        folders = self.class_folders()
        if not folders or folders == list(class_names):
            return
        images = Path(self.root) / EUROSAT_IMAGE_DIR
        extra = [f for f in folders if f not in class_names]
        if extra:
            raise RecipeError(
                f"{images / extra[0]}: label {extra[0]!r} is outside the class list "
                f"task.class_names {list(class_names)} in {where}."
            )
        missing = [c for c in class_names if c not in folders]
        if missing:
            raise RecipeError(
                f"task.class_names in {where} names {missing}, which have no class folder "
                f"in {images}."
            )
        raise RecipeError(
            f"task.class_names in {where} must list the classes in label order (the class "
            f"folders sorted, as torchgeo reads them): {folders}."
        )

    def check_files(self, where: str) -> None:
        super().check_files(where)
        if self.download:
            return  # torchgeo fetches what is missing
        root = Path(self.root)
        missing = [str(p) for p in self.split_paths().values() if not p.is_file()]
        if missing:
            raise RecipeError(
                f"data.root {root} in {where} lacks the EuroSAT split list(s) {missing}; it "
                f"must hold {list(EUROSAT_SPLIT_FILES[self.splits].values())} beside "
                f"{EUROSAT_IMAGE_DIR}/ (or {EUROSAT_ARCHIVE}), as torchgeo's EuroSAT reads "
                "them; or set data.download: true."
            )
        if not (root / EUROSAT_IMAGE_DIR).is_dir() and not (root / EUROSAT_ARCHIVE).is_file():
            raise RecipeError(
                f"data.root {root} in {where} holds neither {EUROSAT_IMAGE_DIR}/ nor "
                f"{EUROSAT_ARCHIVE} (the EuroSAT MS release); or set data.download: true."
            )


CHIP_SUFFIXES = (".tif", ".tiff")


def expand_files(inputs: list[str], suffixes: tuple[str, ...]) -> list[Path]:
    """Files from files, folders (their files with ``suffixes``, sorted) and globs, in the
    order given, each once; an input that matches nothing is an error naming it."""
    import glob

    chips: list[Path] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(given) if Path(p).is_file())
        if not found:
            raise EofmError(
                f"{given}: no chip there (a GeoTIFF file, a folder of them, or a glob).",
                exit_code=2,
            )
        chips.extend(p for p in found if p not in chips)
    return chips


def check_geotiff_chip(chip: Path, file_bands: list[str], chip_size: list[int]) -> bool:
    """One GeoTIFF: ``len(file_bands)`` bands, of ``chip_size`` pixels (a chip; returns
    False) or more on both sides (a scene; returns True). Header only."""
    import rasterio

    try:
        with rasterio.open(chip) as src:
            count, size = src.count, [src.height, src.width]
    except rasterio.errors.RasterioIOError as exc:
        raise EofmError(f"{chip}: not a readable GeoTIFF ({exc}).", exit_code=2) from None
    if count != len(file_bands):
        raise EofmError(
            f"{chip}: {count} bands; this model reads chips of {len(file_bands)} bands "
            f"({', '.join(file_bands)}), as it was trained on.",
            exit_code=2,
        )
    if size[0] < chip_size[0] or size[1] < chip_size[1]:
        raise EofmError(
            f"{chip}: {size[0]} x {size[1]} px; this model classifies chips of "
            f"{chip_size[0]} x {chip_size[1]} px, as it was trained on (or maps scenes "
            "larger than a chip).",
            exit_code=2,
        )
    return size != list(chip_size)

"""The ``data`` keys of BigEarthNet v2 / reBEN (``data.name: bigearthnet``); see ``bigearthnet.py``.

The layout is the release torchgeo 0.8.1 reads (``torchgeo/datasets/bigearthnet.py``,
``BigEarthNetV2``; Clasen et al., "reBEN: Refined BigEarthNet Dataset for Remote Sensing
Image Analysis", arXiv:2407.03653), under ``data.root``:

- ``metadata.parquet``: one row per patch with ``patch_id``, ``labels`` (names of the 19
  classes), ``split`` (``train``, ``validation``, ``test``) and ``s1_name``;
- ``BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_<band>.tif``: 12 single-band Sentinel-2
  L2A files (B01 .. B12 and B8A, no B10) at their native 10, 20 or 60 m, which torchgeo
  resamples bilinearly to 120 x 120 px, ordered B01 .. B08, B8A, B09, B11, B12;
- ``BigEarthNet-S1/<scene>/<s1_name>/<s1_name>_{VH,VV}.tif``: Sentinel-1 (sorted: VH, VV);
- ``Reference_Maps/<tile>/<patch_id>/<patch_id>_reference_map.tif``: CLC 2018 codes.

torchgeo requires the four to be present (or the release's ``.tar.gzaa`` parts). Light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from eofm.bands import SENTINEL2_CODES
from eofm.data.config import DataConfig, check_bands_and_statistics
from eofm.errors import EofmError, RecipeError
from eofm.typed_config import option

#: The S2 band files of a patch in the order torchgeo stacks them (``sort_sentinel2_bands``).
BEN_S2_CODES: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)  # fmt: skip
BEN_S2_BANDS: tuple[str, ...] = tuple(SENTINEL2_CODES[c.replace("B0", "B")] for c in BEN_S2_CODES)
#: The S1 band files of a patch, sorted by name as torchgeo stacks them.
BEN_S1_BANDS: tuple[str, ...] = ("VH", "VV")
#: The parts of the release torchgeo's ``BigEarthNetV2`` checks for (``dir_file_names``).
BEN_PARTS: tuple[str, ...] = (
    "BigEarthNet-S1", "BigEarthNet-S2", "Reference_Maps", "metadata.parquet",
)  # fmt: skip
BEN_CHIP_SIZE = 120


@dataclass
class BigEarthNetConfig(DataConfig):
    """reBEN patches, with the 19-class nomenclature as multi-label targets."""

    #: A patch has a set of labels (sigmoid per class), not one of them.
    multilabel: ClassVar[bool] = True

    bands: list[str] = option(
        help="bands by name: of the 12 Sentinel-2 bands and/or VV, VH (default: the S2 ones)",
        factory=lambda: list(BEN_S2_BANDS),
    )
    mean: list[float] | None = option(
        None, "per-band mean (default: torchgeo's BigEarthNet 2nd-percentile minimum)"
    )
    std: list[float] | None = option(
        None, "per-band std (default: torchgeo's 98th minus 2nd percentile)"
    )
    flips: bool = option(True, "random horizontal and vertical flips in training")
    download: bool = option(False, "let torchgeo download the release into data.root")
    checksum: bool = option(False, "torchgeo checks the MD5 of what it downloads")

    def sensors(self) -> str:
        """torchgeo's ``bands`` argument: ``s2``, ``s1`` or ``all``."""
        s2 = any(b in BEN_S2_BANDS for b in self.bands)
        s1 = any(b in BEN_S1_BANDS for b in self.bands)
        return "all" if s1 and s2 else ("s1" if s1 else "s2")

    def file_bands(self) -> list[str]:
        """The bands of a patch as the datamodule stacks them: S2's, then S1's."""
        sensors = self.sensors()
        return [
            *(BEN_S2_BANDS if sensors != "s1" else ()),
            *(BEN_S1_BANDS if sensors != "s2" else ()),
        ]

    def split_description(self) -> str:
        return "the release's splits (metadata.parquet `split`: train, validation, test)."

    def validate(self, where: str) -> None:
        super().validate(where)
        check_bands_and_statistics(self, where, (*BEN_S2_BANDS, *BEN_S1_BANDS), "BigEarthNet")

    def check_labels(self, class_names: list[str], where: str) -> None:
        """The labels of the patches are in ``metadata.parquet``; the datamodule checks them."""

    def check_files(self, where: str) -> None:
        super().check_files(where)
        if self.download:
            return
        root = Path(self.root)
        missing = [p for p in BEN_PARTS if not (root / p).exists()]
        if missing:
            raise RecipeError(
                f"data.root {root} in {where} lacks {missing} of the BigEarthNet v2 release "
                f"(torchgeo's BigEarthNetV2 reads {list(BEN_PARTS)}); or set data.download: true."
            )

    def chip_files(self, inputs: list[str]) -> list[Path]:
        """The patches ``eofm predict`` reads: patch folders (one ``_<band>.tif`` per S2
        band), or folders of them (a tile of ``BigEarthNet-S2``, or that folder itself)."""
        if self.sensors() != "s2":
            raise EofmError(
                f"eofm predict reads BigEarthNet-S2 patch folders; this model also reads "
                f"Sentinel-1 bands ({self.bands}), whose patches lie elsewhere.",
                exit_code=2,
            )
        patches: list[Path] = []
        for given in inputs:
            found = _patch_folders(Path(given))
            if not found:
                raise EofmError(
                    f"{given}: no BigEarthNet-S2 patch folder there (a folder of "
                    "<patch_id>_<band>.tif files, or a folder of such folders).",
                    exit_code=2,
                )
            patches.extend(p for p in found if p not in patches)
        return patches

    def check_chip(self, chip: Path, file_bands: list[str], chip_size: list[int]) -> bool:
        """A patch folder must hold a file for every S2 band (names only); never a scene."""
        missing = [c for c in BEN_S2_CODES if not (chip / f"{chip.name}_{c}.tif").is_file()]
        if missing:
            raise EofmError(
                f"{chip}: {len(BEN_S2_CODES) - len(missing)} of the {len(BEN_S2_CODES)} band "
                f"files of a BigEarthNet-S2 patch; missing {', '.join(missing)} "
                f"({chip.name}_<band>.tif).",
                exit_code=2,
            )
        return False


def _is_patch(folder: Path) -> bool:
    return (folder / f"{folder.name}_B02.tif").is_file()


def _patch_folders(path: Path, depth: int = 2) -> list[Path]:
    """``path`` if it is a patch folder, else the patch folders up to ``depth`` below it."""
    if not path.is_dir():
        return []
    if _is_patch(path) or any(path.glob(f"{path.name}_B*.tif")):
        return [path]
    if depth == 0:
        return []
    found: list[Path] = []
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        found.extend(_patch_folders(child, depth - 1))
    return found

"""The ``data`` keys of Sen1Floods11 (``data.name: sen1floods11``); see ``sen1floods11.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eofm.data.config import ChipDataConfig, check_splits_filled
from eofm.errors import EofmError, RecipeError
from eofm.typed_config import option


@dataclass
class Sen1Floods11Config(ChipDataConfig):
    """Hand-labelled Sen1Floods11 chips: bands by name, split CSVs, crops, augmentation."""

    bands: list[str] = option(
        help="bands by name: Sentinel-1 (VV, VH), Sentinel-2, or both (each chip's S1Hand "
        "and S2Hand stacked in this order)",
        factory=lambda: ["VV", "VH"],
    )
    split_csv: dict[str, str] | None = option(
        None, "train/val/test -> official split CSV (relative to root)"
    )

    def validate(self, where: str) -> None:
        from eofm.bands import check_band_names

        try:
            self.bands = check_band_names(self.bands, where=f"data.bands of {where}")
        except EofmError as exc:
            raise RecipeError(str(exc)) from None
        super().validate(where)
        if self.split and self.split_csv:
            raise RecipeError(f"Give data.split or data.split_csv in {where}, not both.")

    def split_description(self) -> str:
        if self.split_csv:
            files = ", ".join(f"{k}: `{v}`" for k, v in self.split_csv.items())
            return f"official split files {files}."
        if self.split:
            return super().split_description()
        return f"deterministic split by event, fractions {self.split_fractions} (train/val/test)."

    def check_files(self, where: str) -> None:
        """The chips and split files exist (with bands from S1Hand and S2Hand, each chip
        used has both files), and train and val hold chips (file lists only)."""
        super().check_files(where)
        from eofm.data.sen1floods11_layout import (
            chip_folders,
            chip_splits,
            chips_on_disk,
            complete_chips,
            find_sen1floods11_root,
        )

        try:
            root = find_sen1floods11_root(Path(self.root))
            folders = chip_folders(self.bands)
            on_disk = chips_on_disk(root, folders)
            if self.split:
                chips = complete_chips(root, on_disk)
                self._check_region_splits(root / folders[0], folders[0], chips, where)
                return
            splits = chip_splits(root, on_disk, self.split_csv, self.split_fractions)
        except EofmError as exc:
            raise RecipeError(str(exc)) from None
        how = "data.split_csv" if self.split_csv else f"data.split_fractions {self.split_fractions}"
        check_splits_filled(splits, how, where)

    def _check_region_splits(self, folder: Path, kind: str, chips: list[str], where: str) -> None:
        """Each split holds a chip: the region of each chip's centre, from the rasters'
        headers and the regions' geometry (no pixel is read, no model loaded)."""
        from eofm.data.coords import raster_centre
        from eofm.data.regions import assign_regions, parse_region_split, split_by_region

        spec = parse_region_split(self.split, where)
        centres = {chip: raster_centre(folder / f"{chip}_{kind}.tif") for chip in chips}
        split_by_region(assign_regions(centres, spec), spec, f"the chips under {self.root}")

"""The ``data`` keys of HLS Burn Scars (``data.name: hls_burn_scars``); see ``hls_burn_scars.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eofm.bands import HLS_PRITHVI_BANDS
from eofm.data.config import ChipDataConfig, check_bands_known, check_splits_filled
from eofm.errors import EofmError, RecipeError
from eofm.typed_config import check_positive, option


@dataclass
class HLSBurnScarsConfig(ChipDataConfig):
    """HLS Burn Scars scenes: 6-band merged images with burn-scar masks, by folder.

    ``mean`` and ``std`` are in reflectance x ``reflectance_scale`` (HLS's own units)."""

    bands: list[str] = option(
        help="bands by name, of BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2",
        factory=lambda: list(HLS_PRITHVI_BANDS),
    )
    reflectance_scale: float = option(
        10000.0,
        "the files hold reflectance in 0..1; statistics (data.mean/std, the backbone's) "
        "are in reflectance x this (HLS's own x10000 scaling)",
    )

    def split_description(self) -> str:
        if self.split:
            return super().split_description()
        return "the release's `training/` scenes train; `validation/` is divided into val and test by MGRS tile."

    def validate(self, where: str) -> None:
        check_bands_known(self, where, HLS_PRITHVI_BANDS, "HLS Burn Scars")
        check_positive(self, where, "data.reflectance_scale")
        super().validate(where)

    def check_files(self, where: str) -> None:
        """The release's folders and scenes, and a non-empty train and val split, from the
        file names alone (no raster is read, no model loaded)."""
        super().check_files(where)
        if self.split:
            return  # region splits: checked by ChipDataConfig from the regions file
        from eofm.data.hls_burn_scars_layout import FOLDERS, scene_pairs, split_by_tile

        root = Path(self.root)
        missing = [f for f in FOLDERS if not (root / f).is_dir()]
        if missing:
            raise RecipeError(
                f"data.root {root} in {where} is not an HLS Burn Scars folder: {missing[0]}/ "
                "is missing (data.root holds training/ and validation/)."
            )
        try:
            train = scene_pairs(root / "training")
            held_out = scene_pairs(root / "validation")
        except EofmError as exc:
            raise RecipeError(str(exc)) from None
        f_val, f_test = self.split_fractions[1], self.split_fractions[2]
        val, _ = split_by_tile(list(held_out), f_val / max(f_val + f_test, 1e-12))
        splits = {"train": list(train), "val": val}
        how = f"data.split_fractions {self.split_fractions} (validation/ by MGRS tile)"
        check_splits_filled(splits, how, where)

"""The ``data`` keys of Sen1Floods11 (``data.name: sen1floods11``); see ``sen1floods11.py``."""

from __future__ import annotations

from dataclasses import dataclass

from eofm.data.config import ChipDataConfig
from eofm.errors import EofmError, RecipeError
from eofm.typed_config import option


@dataclass
class Sen1Floods11Config(ChipDataConfig):
    """Hand-labelled Sen1Floods11 chips: bands by name, split CSVs, crops, augmentation."""

    bands: list[str] = option(
        help="bands by name, all Sentinel-1 (VV, VH) or all Sentinel-2",
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

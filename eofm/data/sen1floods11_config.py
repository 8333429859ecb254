"""The ``data`` keys of Sen1Floods11 (``data.name: sen1floods11``); see ``sen1floods11.py``."""

from __future__ import annotations

from dataclasses import dataclass

from eofm.data.config import DataConfig
from eofm.errors import EofmError, RecipeError
from eofm.typed_config import check_positive, option


@dataclass
class Sen1Floods11Config(DataConfig):
    """Hand-labelled Sen1Floods11 chips: bands by name, split CSVs, crops, augmentation."""

    bands: list[str] = option(
        help="bands by name, all Sentinel-1 (VV, VH) or all Sentinel-2",
        factory=lambda: ["VV", "VH"],
    )
    split_csv: dict[str, str] | None = option(
        None, "train/val/test -> official split CSV (relative to root)"
    )
    crop_size: int | None = option(224, "random training crop in px (null: whole chips)")
    eval_crop_size: int | None = option(None, "centre crop for val/test (null: whole chips)")
    train_repeats: int = option(1, "random crops drawn per training chip per epoch")
    hflip: bool = option(True, "random horizontal flips in training")
    mean: list[float] | None = option(None, "per-band mean (default: the backbone's)")
    std: list[float] | None = option(None, "per-band std (default: the backbone's)")

    def validate(self, where: str) -> None:
        from eofm.bands import check_band_names

        super().validate(where)
        try:
            self.bands = check_band_names(self.bands, where=f"data.bands of {where}")
        except EofmError as exc:
            raise RecipeError(str(exc)) from None
        check_positive(self, where, "data.crop_size", "data.eval_crop_size", "data.train_repeats")
        if (self.mean is None) != (self.std is None):
            raise RecipeError(f"Give both data.mean and data.std in {where}, or neither.")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) != len(self.bands):
                raise RecipeError(
                    f"data.{key} in {where} has {len(values)} values for {len(self.bands)} bands."
                )

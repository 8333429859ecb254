"""The keys every dataset's ``data`` section has; each dataset extends this dataclass.

A dataset's own config lives next to its datamodule (``eofm/data/<name>_config.py``),
is registered with it in :mod:`eofm.registry`, and is what ``data.name`` selects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from eofm.errors import EofmError, RecipeError
from eofm.typed_config import check_positive, option


@dataclass
class DataConfig:
    """Dataset location, splits and loader settings shared by every dataset."""

    name: str = option("sen1floods11", "the dataset (eofm recipes --keys datasets)")
    root: str = option("", "the dataset's folder (or store)")
    split_fractions: list[float] = option(
        help="train/val/test fractions when no split files are given",
        factory=lambda: [0.6, 0.2, 0.2],
    )
    batch_size: int = option(4, "samples per batch")
    num_workers: int | Literal["auto"] = option(
        "auto", "DataLoader worker processes; auto: cores - 1 (0 on <= 2 cores), at most 8"
    )
    #: Keys holding local paths, made absolute when a run dir records the recipe.
    path_keys: ClassVar[tuple[str, ...]] = ("root",)

    def validate(self, where: str) -> None:
        """Checks that need no data access; datasets extend them."""
        check_positive(self, where, "data.batch_size")
        if self.num_workers != "auto":
            check_positive(self, where, "data.num_workers", allow_zero=True)
        fractions = self.split_fractions
        if len(fractions) != 3 or not math.isclose(sum(fractions), 1.0) or min(fractions) < 0:
            raise RecipeError(
                f"data.split_fractions in {where} must be 3 numbers >= 0 summing to 1, got {fractions}."
            )

    def frame_list(self) -> list[dict[str, str]]:
        """The time steps of multi-date samples in file order (``data.frames``: name and
        optional date); single-date datasets have none."""
        return []

    def check_files(self, where: str) -> None:
        """Checks of the data that read only metadata (file lists, headers, a time axis),
        run by ``fit`` before torch is imported or a run dir is made; datasets extend them.
        Errors exit 2 and name the key."""
        if not str(self.root).strip():
            raise RecipeError(f"data.root in {where} is not set; give the dataset's folder.")
        if not Path(self.root).exists():
            raise RecipeError(f"Data root {self.root} does not exist (data.root in {where}).")


def check_splits_filled(splits: dict[str, list], how: str, where: str) -> None:
    """``fit`` trains on ``train`` and picks its checkpoint on ``val``: neither may be empty."""
    for name in ("train", "val"):
        if not splits.get(name):
            raise RecipeError(
                f"{how} in {where} leaves the {name} split empty; fit needs samples in "
                "train and val."
            )


def check_bands_known(
    config: Any, where: str, known: Sequence[str] | None = None, dataset: str = ""
) -> None:
    """``data.bands`` named by eofm's band table (canonical names written back), and
    among ``known``, the ``dataset``'s bands, when given."""
    from eofm.bands import check_band_names

    try:
        config.bands = check_band_names(config.bands, where=f"data.bands of {where}")
    except EofmError as exc:
        raise RecipeError(str(exc)) from None
    extra = [b for b in config.bands if b not in known] if known is not None else []
    if extra:
        raise RecipeError(f"data.bands {extra} in {where} are not {dataset} bands {list(known)}.")


def check_bands_and_statistics(
    config: Any, where: str, known: Sequence[str] | None = None, dataset: str = ""
) -> None:
    """``data.bands`` as :func:`check_bands_known` checks them, and ``data.mean`` /
    ``data.std`` both given or neither, one value per band; one :class:`RecipeError`
    naming the key."""
    check_bands_known(config, where, known, dataset)
    if (config.mean is None) != (config.std is None):
        raise RecipeError(f"Give both data.mean and data.std in {where}, or neither.")
    for key in ("mean", "std"):
        values = getattr(config, key)
        if values is not None and len(values) != len(config.bands):
            raise RecipeError(
                f"data.{key} in {where} has {len(values)} values for {len(config.bands)} bands."
            )


@dataclass
class ChipDataConfig(DataConfig):
    """Keys of every labelled-chip dataset (``eofm.data.chips``): crops, flips, statistics."""

    crop_size: int | None = option(224, "random training crop in px (null: whole chips)")
    eval_crop_size: int | None = option(None, "centre crop for val/test (null: whole chips)")
    train_repeats: int = option(1, "random crops drawn per training chip per epoch")
    hflip: bool = option(True, "random horizontal flips in training")
    mean: list[float] | None = option(None, "per-band mean (default: the backbone's)")
    std: list[float] | None = option(None, "per-band std (default: the backbone's)")
    split: dict[str, Any] | None = option(
        None,
        "hold out regions: {by: region|country|continent|latitude_band, test: [..], val: [..], "
        "regions: FILE, column: NAME, width: 15, id_fraction: 0.2, overlap: first|drop (a "
        "sample inside two overlapping regions: the first listed wins, or it joins no split; "
        "default: refused)}",
    )

    def split_description(self) -> str:
        """How the samples were split, in a sentence (for model cards)."""
        if self.split:
            return f"split by region: {self.split}."
        return f"deterministic split, fractions {self.split_fractions} (train/val/test)."

    def validate(self, where: str) -> None:
        super().validate(where)
        from eofm.data.regions import parse_region_split

        parse_region_split(self.split, where)
        check_positive(self, where, "data.crop_size", "data.eval_crop_size", "data.train_repeats")
        if (self.mean is None) != (self.std is None):
            raise RecipeError(f"Give both data.mean and data.std in {where}, or neither.")
        bands = getattr(self, "bands", None) or []
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and bands and len(values) != len(bands):
                raise RecipeError(
                    f"data.{key} in {where} has {len(values)} values for {len(bands)} bands."
                )

    def check_files(self, where: str) -> None:
        super().check_files(where)
        from eofm.data.regions import check_regions_file, parse_region_split

        split = parse_region_split(self.split, where)
        if split is not None:
            check_regions_file(split, where)

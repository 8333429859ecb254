"""BigEarthNet v2 (reBEN) patches through ``torchgeo.datasets.BigEarthNetV2``: a set of
the 19 classes per 120 px patch (multi-label).

torchgeo reads the release (``metadata.parquet``, the per-band S2 and S1 files resampled
to 120 x 120 px; see :mod:`eofm.data.bigearthnet_config`); this module adds one clear
error for a patch with missing band files or a label outside the 19 classes,
normalisation, flips and loaders. Samples are ``{"image": (bands, 120, 120) float,
"label": (19,) float 0/1}``; the reference maps are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torchgeo.datasets import BigEarthNetV2

from eofm.data.bigearthnet_config import (
    BEN_CHIP_SIZE,
    BEN_S1_BANDS,
    BEN_S2_BANDS,
    BEN_S2_CODES,
)
from eofm.data.eurosat import Normalised
from eofm.data.splits import SplitLoaders
from eofm.errors import EofmError

#: The 19 classes in label order (torchgeo's ``BigEarthNetV2.class_set``).
BEN_CLASSES: tuple[str, ...] = tuple(BigEarthNetV2.class_set)


def torchgeo_statistics(bands: Sequence[str]) -> tuple[list[float], list[float]]:
    """``(min, max - min)`` per band, the 2nd and 98th percentiles that torchgeo's
    ``BigEarthNetDataModule`` scales with (``mins``, ``maxs``: VV, VH, then the S2 bands)."""
    from torchgeo.datamodules.bigearthnet import BigEarthNetDataModule as Stats

    order = ["VV", "VH", *BEN_S2_BANDS]
    mins, maxs = Stats.mins.tolist(), Stats.maxs.tolist()
    return [mins[order.index(b)] for b in bands], [
        maxs[order.index(b)] - mins[order.index(b)] for b in bands
    ]


class CheckedBigEarthNetV2(BigEarthNetV2):
    """torchgeo's reader, whose samples name the patch at fault: one with missing band
    files (torchgeo would stack fewer bands) or a label outside the 19 classes."""

    def _patch_folder(self, index: int, sensor: str) -> Path:
        row = self.metadata_df.loc[index]
        name = row["s1_name"] if sensor == "s1" else row["patch_id"]
        parent = "_".join(name.split("_")[: -3 if sensor == "s1" else -2])
        return Path(self.root, self.dir_file_names[sensor], parent, name)

    def _image(self, index: int, sensor: str) -> torch.Tensor:
        image = self._load_image(index, sensor)
        expected = len(BEN_S2_CODES) if sensor == "s2" else len(BEN_S1_BANDS)
        if image.ndim != 3 or image.shape[0] != expected:
            found = image.shape[0] if image.ndim == 3 else 0
            raise EofmError(
                f"{self._patch_folder(index, sensor)}: {found} band files; a BigEarthNet "
                f"{sensor.upper()} patch has {expected}."
            )
        return image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sensors = ["s2", "s1"] if self.bands == "all" else [self.bands]
        image = torch.cat([self._image(index, s) for s in sensors])
        unknown = [n for n in self.metadata_df.iloc[index]["labels"] if n not in self.class2idx]
        if unknown:
            raise EofmError(
                f"{self._patch_folder(index, 's2')}: label {unknown[0]!r} (metadata.parquet) "
                f"is outside the class list {list(BEN_CLASSES)}."
            )
        return {"image": image, "label": self._load_target(index)}


class Selected(torch.utils.data.Dataset):
    """The recipe's bands of each patch, with its labels as floats (for BCE)."""

    def __init__(self, patches: CheckedBigEarthNetV2, index: list[int]) -> None:
        self.patches, self.index = patches, torch.tensor(index)

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        sample = self.patches[i]
        return {"image": sample["image"][self.index], "label": sample["label"].float()}


class BigEarthNetDataModule(SplitLoaders, L.LightningDataModule):
    """Train, val and test loaders of reBEN, split as ``metadata.parquet`` says."""

    collate = None  # torch's default collation

    def __init__(
        self,
        root: str,
        *,
        bands: Sequence[str] = BEN_S2_BANDS,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flips: bool = True,
        download: bool = False,
        checksum: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        **_: Any,
    ) -> None:
        from eofm.data.bigearthnet_config import BigEarthNetConfig

        super().__init__()
        config = BigEarthNetConfig(root=str(root), bands=list(bands))
        self.root, self.bands = Path(root), list(bands)
        self.file_bands = config.file_bands()
        self.index = [self.file_bands.index(b) for b in self.bands]
        self.patches = {
            split: CheckedBigEarthNetV2(
                root, split=split, bands=config.sensors(), download=download, checksum=checksum
            )
            for split in ("train", "val", "test")
        }
        self.classes = list(BEN_CLASSES)
        if mean is None or std is None:
            mean, std = torchgeo_statistics(self.bands)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.flips, self.seed = flips, seed
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.chip_size = BEN_CHIP_SIZE
        self.splits = {s: list(p.metadata_df["patch_id"]) for s, p in self.patches.items()}

    def check_labels(self, class_names: Sequence[str], where: str) -> None:
        """``class_names`` must be the 19 classes in torchgeo's order, and every patch's
        labels among them (one error naming the patch and the label)."""
        if list(class_names) != self.classes:
            raise EofmError(
                f"task.class_names in {where} must be BigEarthNet's 19 classes in label "
                f"order: {self.classes}."
            )
        for patches in self.patches.values():
            for row, labels in enumerate(patches.metadata_df["labels"]):
                unknown = [n for n in labels if n not in patches.class2idx]
                if unknown:
                    raise EofmError(
                        f"{patches._patch_folder(row, 's2')}: label {unknown[0]!r} "
                        f"(metadata.parquet) is outside the class list task.class_names."
                    )

    def dataset(self, split: str) -> Normalised:
        dataset = Normalised(
            Selected(self.patches[split], self.index),
            torch.tensor(self.mean),
            torch.tensor(self.std),
            flips=self.flips and split == "train",
            seed=self.seed,
        )
        if not len(dataset):
            raise EofmError(
                f"The BigEarthNet {split} split under {self.root} has no patch "
                "(metadata.parquet's split column)."
            )
        return dataset

    def augmentations(self) -> list[str]:
        return ["flips"] if self.flips else []

    @staticmethod
    def read_chip(chip: Path) -> torch.Tensor:
        """A BigEarthNet-S2 patch folder's 12 bands, read as torchgeo's
        ``BigEarthNetV2._load_image`` reads them (bilinear to 120 x 120 px, int32)."""
        import rasterio
        from rasterio.enums import Resampling

        bands = []
        for code in BEN_S2_CODES:
            with rasterio.open(chip / f"{chip.name}_{code}.tif") as src:
                bands.append(
                    src.read(
                        indexes=1,
                        out_shape=(BEN_CHIP_SIZE, BEN_CHIP_SIZE),
                        out_dtype="int32",
                        resampling=Resampling.bilinear,
                    )
                )
        return torch.from_numpy(np.stack(bands)).float()

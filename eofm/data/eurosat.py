"""EuroSAT MS chips through ``torchgeo.datasets.EuroSAT``: one label per 64 px chip.

torchgeo reads the release (its split lists, class folders and 13-band GeoTIFFs; see
:mod:`eofm.data.eurosat_config` for the layout) and checks downloads against their MD5
when ``data.checksum`` is set; this module adds what the pipeline needs on top: one
clear error for a chip whose band count is not the release's, normalisation, flips,
and loaders. Samples are ``{"image": (bands, 64, 64) float, "label": int64}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchgeo.datasets import EuroSAT, EuroSATSpatial

from eofm.data.eurosat_config import EUROSAT_BANDS, EUROSAT_FILE_CODES
from eofm.data.splits import SplitLoaders
from eofm.errors import EofmError


def torchgeo_statistics(bands: Sequence[str]) -> tuple[list[float], list[float]]:
    """Per-band mean and std of the whole release, as torchgeo's ``EuroSATDataModule``
    publishes them (``torchgeo/datamodules/eurosat.py``: ``MEAN`` and ``STD`` by band code)."""
    from torchgeo.datamodules.eurosat import MEAN, STD

    codes = [EUROSAT_FILE_CODES[EUROSAT_BANDS.index(b)] for b in bands]
    return [float(MEAN[c]) for c in codes], [float(STD[c]) for c in codes]


def _checked(base: type) -> type:
    """``base`` (torchgeo's ``EuroSAT`` or ``EuroSATSpatial``), whose samples are refused,
    naming the file, when a chip does not hold the release's 13 bands (torchgeo would
    select bands by index from whatever the file holds)."""

    class Checked(base):  # type: ignore[misc, valid-type]
        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            image, label = self._load_image(index)
            if image.shape[0] != len(EUROSAT_FILE_CODES):
                raise EofmError(
                    f"{self.samples[index][0]}: {image.shape[0]} bands; a EuroSAT MS chip "
                    f"holds {len(EUROSAT_FILE_CODES)} ({', '.join(EUROSAT_FILE_CODES)})."
                )
            image = torch.index_select(image, 0, self.band_indices).float()
            return {"image": image, "label": label}

    Checked.__name__ = Checked.__qualname__ = f"Checked{base.__name__}"
    return Checked


CHECKED = {"official": _checked(EuroSAT), "spatial": _checked(EuroSATSpatial)}


class Normalised(torch.utils.data.Dataset):
    """A torchgeo split, normalised per band, with random flips when training."""

    def __init__(
        self, chips: EuroSAT, mean: torch.Tensor, std: torch.Tensor, *, flips: bool, seed: int
    ) -> None:
        self.chips, self.mean, self.std, self.flips = chips, mean, std, flips
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.chips[index]
        image = (sample["image"] - self.mean[:, None, None]) / self.std[:, None, None]
        if self.flips:
            if torch.rand(1, generator=self.generator) < 0.5:
                image = image.flip(-1)
            if torch.rand(1, generator=self.generator) < 0.5:
                image = image.flip(-2)
        return {"image": image.contiguous(), "label": sample["label"].long()}


class EuroSATDataModule(SplitLoaders, L.LightningDataModule):
    """Train, val and test loaders of EuroSAT MS, split as the release lists them."""

    collate = None  # torch's default collation

    def __init__(
        self,
        root: str,
        *,
        bands: Sequence[str] = EUROSAT_BANDS,
        splits: str = "official",
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
        super().__init__()
        self.root, self.bands = Path(root), list(bands)
        codes = [EUROSAT_FILE_CODES[EUROSAT_BANDS.index(b)] for b in self.bands]
        self.chips = {
            split: CHECKED[splits](
                root, split=split, bands=codes, download=download, checksum=checksum
            )
            for split in ("train", "val", "test")
        }
        self.classes: list[str] = list(self.chips["train"].classes)
        if mean is None or std is None:
            mean, std = torchgeo_statistics(self.bands)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.flips, self.seed = flips, seed
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.chip_size = 64
        self.splits = {
            split: [Path(path).name for path, _ in chips.samples]
            for split, chips in self.chips.items()
        }

    @property
    def file_bands(self) -> list[str]:
        """The bands of a chip file, in file order."""
        return list(EUROSAT_BANDS)

    def check_labels(self, class_names: Sequence[str], where: str) -> None:
        """The labels torchgeo found (its class folders, sorted) must be ``class_names``."""
        if self.classes != list(class_names):
            raise EofmError(
                f"task.class_names in {where} {list(class_names)} are not the EuroSAT class "
                f"folders under {self.root} in label order: {self.classes}."
            )

    def dataset(self, split: str) -> Normalised:
        dataset = Normalised(
            self.chips[split],
            torch.tensor(self.mean),
            torch.tensor(self.std),
            flips=self.flips and split == "train",
            seed=self.seed,
        )
        if not len(dataset):
            raise EofmError(
                f"The EuroSAT {split} split under {self.root} has no chip: its split list "
                "names none of the chips in the class folders."
            )
        return dataset

    def augmentations(self) -> list[str]:
        return ["flips"] if self.flips else []

    @staticmethod
    def read_chip(chip: Path) -> torch.Tensor:
        """A chip's bands in file order, read as training reads them (torchgeo's
        ``rasterio_loader``), for ``eofm predict``."""
        from torchgeo.datasets.utils import rasterio_loader

        return torch.from_numpy(rasterio_loader(chip)).permute(2, 0, 1).float()

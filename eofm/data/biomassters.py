"""BioMassters through ``torchgeo.datasets.BioMassters``: above-ground biomass (Mg/ha)
per pixel from a month of Sentinel-1 and Sentinel-2 (layout: :mod:`eofm.data.biomassters_config`).

torchgeo indexes the release (its metadata CSV: a sample per chip and month where every
sensor has a file, ``as_time_series=False``) and pairs each with the chip's target;
eofm reads the bands as float32, where torchgeo 0.8.1's ``_load_input`` casts them to
int32 (which would truncate S1's dB backscatter), stacks S1's VV and VH of one orbit with
S2's optical bands, selects ``data.bands``, normalises, and divides torchgeo's labelled
``train`` split into train/val/test by chip. Samples are those of
:mod:`eofm.data.geotiff_targets` (``image``, ``target`` NaN where not scored, ``chip``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset
from torchgeo.datasets import BioMassters

from eofm.data.biomassters_config import (
    BIOMASSTERS_BANDS,
    S1_BAND_COUNT,
    S1_FILE_BANDS,
    S1_MISSING,
    S2_BAND_COUNT,
    sensors_for,
)
from eofm.data.geotiff_targets import collate_regression, split_stems
from eofm.data.splits import SplitLoaders
from eofm.errors import EofmError


class FloatBioMassters(BioMassters):
    """torchgeo's ``BioMassters`` reading its inputs as float32, checking band counts."""

    EXPECTED = {"S1": S1_BAND_COUNT, "S2": S2_BAND_COUNT}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        firsts = self.df.groupby("num_index")["chip_id"].first()
        #: The chip id of each sample index.
        self.chip_of_index: list[str] = [str(firsts[i]) for i in range(len(self))]

    def _load_input(self, filenames: list[Any]) -> torch.Tensor:
        import rasterio

        arrays = []
        for name in filenames:
            path = os.path.join(self.root, f"{self.split}_features", name)
            with rasterio.open(path) as src:
                sensor = "S1" if "_S1_" in os.path.basename(path) else "S2"
                if src.count != self.EXPECTED[sensor]:
                    raise EofmError(
                        f"{path}: {src.count} bands; a BioMassters {sensor} file holds "
                        f"{self.EXPECTED[sensor]}."
                    )
                arrays.append(src.read().astype(np.float32))
        return torch.from_numpy(np.concatenate(arrays, axis=0))


class BioMasstersSamples(Dataset):
    """Samples ``indexes`` of ``source``: the stacked bands ``pick``, normalised."""

    def __init__(
        self,
        source: FloatBioMassters,
        indexes: Sequence[int],
        pick: Sequence[int],
        orbit: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        hflip: bool,
        pad_multiple: int,
    ) -> None:
        self.source, self.indexes, self.pick, self.orbit = source, list(indexes), list(pick), orbit
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.hflip, self.pad_multiple = hflip, max(1, pad_multiple)

    def __len__(self) -> int:
        return len(self.indexes)

    def raw(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
        """``(bands (C, H, W), valid (H, W), target (H, W), chip)`` of sample ``index``."""
        sample = self.source[self.indexes[index]]
        parts, valid = [], None
        if "image_S1" in sample:
            s1 = sample["image_S1"][list(self.orbit)]
            valid = (s1 != S1_MISSING).all(dim=0) & torch.isfinite(s1).all(dim=0)
            parts.append(s1)
        if "image_S2" in sample:
            parts.append(sample["image_S2"][: len(BIOMASSTERS_BANDS) - 2])
        stack = torch.cat(parts)
        if "image_S1" not in sample:  # the stack always counts VV, VH first
            stack = torch.cat([torch.zeros_like(stack[:2]), stack])
        elif "image_S2" not in sample:
            stack = torch.cat([stack, torch.zeros(len(BIOMASSTERS_BANDS) - 2, *stack.shape[1:])])
        image = stack[self.pick]
        valid = torch.isfinite(image).all(dim=0) & (True if valid is None else valid)
        target = sample["label"][0].float()
        chip = self.source.chip_of_index[self.indexes[index]]
        if not torch.isfinite(target).any():
            raise EofmError(
                f"{Path(self.source.root) / 'train_agbm' / f'{chip}_agbm.tif'}: no valid pixel "
                "(every value is NaN); a target needs at least one pixel to score."
            )
        return image, valid, target, chip

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, valid, target, chip = self.raw(index)
        data = torch.where(valid, (image - self.mean) / self.std, 0.0)
        target = torch.where(valid, target, torch.nan)
        h, w = target.shape
        pad_h, pad_w = -h % self.pad_multiple, -w % self.pad_multiple
        if pad_h or pad_w:
            data = torch.nn.functional.pad(data, (0, pad_w, 0, pad_h))
            target = torch.nn.functional.pad(target, (0, pad_w, 0, pad_h), value=torch.nan)
        if self.hflip and torch.rand(()) < 0.5:
            data, target = data.flip(-1), target.flip(-1)
        return {"image": data.contiguous(), "target": target.contiguous(), "chip": chip}


class BioMasstersDataModule(SplitLoaders, L.LightningDataModule):
    """Splits by chip, statistics and loaders of BioMassters' labelled samples."""

    name = "biomassters"

    def __init__(
        self,
        root: str | Path,
        *,
        bands: Sequence[str],
        s1_orbit: str = "ascending",
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
        hflip: bool = True,
        batch_size: int = 4,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        pad_multiple: int = 16,
        statistics_samples: int = 64,
        **_: Any,
    ) -> None:
        super().__init__()
        self.root, self.bands = Path(root), list(bands)
        sensors = sensors_for(self.bands)
        self.source = FloatBioMassters(str(root), split="train", sensors=sensors)
        chips = sorted(set(self.source.chip_of_index))
        by_chip = split_stems(chips, split_fractions)
        self.splits = by_chip
        where = {c: s for s, members in by_chip.items() for c in members}
        self.indexes: dict[str, list[int]] = {"train": [], "val": [], "test": []}
        for index, chip in enumerate(self.source.chip_of_index):
            self.indexes[where[chip]].append(index)
        if not self.indexes["train"] or not self.indexes["val"]:
            raise EofmError(
                f"{len(chips)} BioMassters chip(s) under {self.root}: fit needs at least one "
                "in train and one in val (data.split_fractions)."
            )
        self.pick = [BIOMASSTERS_BANDS.index(b) for b in self.bands]
        self.orbit = S1_FILE_BANDS[s1_orbit]
        self.hflip, self.pad_multiple, self.seed = hflip, pad_multiple, seed
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.file_bands = list(self.bands)
        self._statistics(mean, std, statistics_samples)

    def _samples(self, split: str, mean: Sequence[float], std: Sequence[float]) -> Any:
        return BioMasstersSamples(
            self.source,
            self.indexes[split],
            self.pick,
            self.orbit,
            mean,
            std,
            hflip=self.hflip and split == "train",
            pad_multiple=self.pad_multiple,
        )

    def _statistics(self, mean: Any, std: Any, count: int) -> None:
        """Band and target statistics over the valid pixels of up to ``count`` training
        samples spread over the split (float64 sums)."""
        raw = self._samples("train", [0.0] * len(self.bands), [1.0] * len(self.bands))
        picks = np.unique(np.linspace(0, len(raw) - 1, min(count, len(raw))).astype(int))
        sums = np.zeros((2, len(self.bands)))
        target_sums, pixels, target_pixels = np.zeros(2), 0, 0
        for i in picks:
            image, valid, target, _ = raw.raw(int(i))
            values = image[:, valid].double().numpy()
            sums += [values.sum(axis=1), np.square(values).sum(axis=1)]
            pixels += values.shape[1]
            scored = target[torch.isfinite(target)].double().numpy()
            target_sums += [scored.sum(), np.square(scored).sum()]
            target_pixels += scored.size
        if mean is None or std is None:
            mean = sums[0] / max(pixels, 1)
            std = np.sqrt(np.maximum(sums[1] / max(pixels, 1) - mean**2, 1e-12))
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        t_mean = target_sums[0] / max(target_pixels, 1)
        self.target_mean = float(t_mean)
        self.target_std = float(
            np.sqrt(max(target_sums[1] / max(target_pixels, 1) - t_mean**2, 1e-12))
        )

    def dataset(self, split: str) -> BioMasstersSamples:
        if not self.indexes[split]:
            raise EofmError(f"The BioMassters {split} split under {self.root} is empty.")
        return self._samples(split, self.mean, self.std)

    @staticmethod
    def collate(samples: list[dict]) -> dict[str, Any]:
        return collate_regression(samples)

    def augmentations(self) -> list[str]:
        return ["hflip"] if self.hflip else []

    def input_range(self, max_samples: int = 16) -> dict:
        """The float32 stacks' per-band percentiles over a few training samples."""
        from eofm.data.geotiff import band_statistics

        raw = self._samples("train", self.mean, self.std)
        picks = np.unique(np.linspace(0, len(raw) - 1, min(max_samples, len(raw))).astype(int))
        values = []
        for i in picks:
            image, valid, _, _ = raw.raw(int(i))
            values.append(image[:, valid].numpy())
        stats = band_statistics(np.concatenate(values, axis=1))
        return {"dtype": "float32", "bands": list(self.bands), **stats}

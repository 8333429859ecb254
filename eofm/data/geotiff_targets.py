"""GeoTIFF images with GeoTIFF targets: a value per pixel (see
:mod:`eofm.data.geotiff_targets_config` for the layout and its checks).

Samples are ``{"image": (C, H, W) float32 normalised, 0 where the input is invalid,
"target": (H, W) float32, NaN where the target is nodata or any input band is invalid,
"chip": stem}``; whole chips are padded at the bottom and right to a multiple of the
backbone's patch (padding is NaN in the target, never scored).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from eofm.data.chips import band_statistics
from eofm.data.geotiff import read_raster
from eofm.data.geotiff_targets_config import find_pairs, valid_target
from eofm.data.splits import SplitLoaders
from eofm.errors import EofmError


def split_stems(stems: Sequence[str], fractions: Sequence[float]) -> dict[str, list[str]]:
    """Stems in the order of their SHA-1, cut by ``fractions``; val and test each keep
    at least one stem when their fraction is positive and there are stems to spare."""
    order = sorted(stems, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    n = len(order)
    n_val = max(1, round(fractions[1] * n)) if fractions[1] > 0 and n > 2 else 0
    n_test = max(1, round(fractions[2] * n)) if fractions[2] > 0 and n > 2 else 0
    n_train = n - n_val - n_test
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def target_statistics(targets: Sequence[Path]) -> tuple[float, float]:
    """Mean and standard deviation of the valid target pixels (float64 sums)."""
    total = squares = count = 0.0
    for path in targets:
        values, valid = valid_target(path)
        picked = values[valid].astype(np.float64)
        total += picked.sum()
        squares += np.square(picked).sum()
        count += picked.size
    mean = total / max(count, 1)
    return float(mean), float(np.sqrt(max(squares / max(count, 1) - mean**2, 1e-12)))


class RegressionChips(Dataset):
    """Image/target pairs of one split, read whole or by a random crop."""

    def __init__(
        self,
        pairs: dict[str, tuple[Path, Path]],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        crop_size: int | None,
        hflip: bool,
        pad_multiple: int,
    ) -> None:
        self.pairs, self.chips = pairs, sorted(pairs)
        self.mean = np.asarray(mean, np.float32)[:, None, None]
        self.std = np.asarray(std, np.float32)[:, None, None]
        self.crop_size, self.hflip, self.pad_multiple = crop_size, hflip, max(1, pad_multiple)

    def __len__(self) -> int:
        return len(self.chips)

    def _window(self, image: Path) -> Any:
        if not self.crop_size:
            return None
        from rasterio.windows import Window

        from eofm.data.geotiff import raster_size

        h, w = raster_size(image)
        size = self.crop_size
        if h < size or w < size:
            return None
        top = int(torch.randint(0, h - size + 1, ()))
        left = int(torch.randint(0, w - size + 1, ()))
        return Window(left, top, size, size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        chip = self.chips[index]
        image_path, target_path = self.pairs[chip]
        window = self._window(image_path)
        image = read_raster(image_path, window=window)
        values, valid = valid_target(target_path, window)
        target = np.where(valid & image.valid, values, np.nan).astype(np.float32)
        data = np.where(image.valid, (image.data - self.mean) / self.std, 0.0).astype(np.float32)
        m = self.pad_multiple
        h, w = target.shape
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:
            data = np.pad(data, ((0, 0), (0, pad_h), (0, pad_w)))
            target = np.pad(target, ((0, pad_h), (0, pad_w)), constant_values=np.nan)
        if self.hflip and torch.rand(()) < 0.5:
            data, target = data[:, :, ::-1], target[:, ::-1]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(data)),
            "target": torch.from_numpy(np.ascontiguousarray(target)),
            "chip": chip,
        }


def collate_regression(samples: list[dict]) -> dict[str, Any]:
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "target": torch.stack([s["target"] for s in samples]),
        "chip": [s["chip"] for s in samples],
    }


class GeoTIFFTargetsDataModule(SplitLoaders, L.LightningDataModule):
    """Splits, statistics and loaders of image/target pairs (checked by the config)."""

    name = "geotiff_targets"

    def __init__(
        self,
        root: str | Path,
        *,
        bands: Sequence[str],
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
        crop_size: int | None = None,
        hflip: bool = True,
        batch_size: int = 4,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        pad_multiple: int = 16,
        **_: Any,
    ) -> None:
        super().__init__()
        self.root, self.bands = Path(root), list(bands)
        self.pairs = find_pairs(self.root, "data.root")
        self.splits = split_stems(list(self.pairs), split_fractions)
        if not self.splits["train"] or not self.splits["val"]:
            raise EofmError(
                f"{len(self.pairs)} image/target pair(s) under {self.root}: fit needs at least "
                "one in train and one in val (data.split_fractions)."
            )
        if mean is None or std is None:
            images = [self.pairs[c][0] for c in self.splits["train"]]
            mean, std = band_statistics(images, range(1, len(self.bands) + 1), where=self.root)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.target_mean, self.target_std = target_statistics(
            [self.pairs[c][1] for c in self.splits["train"]]
        )
        self.crop_size, self.hflip, self.pad_multiple = crop_size, hflip, pad_multiple
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.seed = seed
        self.file_bands = list(self.bands)

    def dataset(self, split: str) -> RegressionChips:
        train = split == "train"
        chips = self.splits[split]
        if not chips:
            raise EofmError(f"The {split} split of {self.root} is empty (data.split_fractions).")
        return RegressionChips(
            {c: self.pairs[c] for c in chips},
            self.mean,
            self.std,
            crop_size=self.crop_size if train else None,
            hflip=train and self.hflip,
            pad_multiple=self.pad_multiple,
        )

    @staticmethod
    def collate(samples: list[dict]) -> dict[str, Any]:
        return collate_regression(samples)

    def augmentations(self) -> list[str]:
        return (["hflip"] if self.hflip else []) + (
            [f"random {self.crop_size} px crops"] if self.crop_size else []
        )

    def input_range(self, max_pixels: int = 200_000) -> dict:
        """The training images' dtype and per-band percentiles (``model.json``), which
        ``eofm predict`` compares each scene with."""
        from eofm.data.geotiff import band_statistics as percentiles
        from eofm.data.geotiff import raster_dtype

        chips = self.splits["train"]
        per_chip = max(1, max_pixels // len(chips))
        rng = np.random.default_rng(0)
        samples = []
        for chip in chips:
            image = read_raster(self.pairs[chip][0])
            pixels = image.data[:, image.valid]
            if pixels.shape[1] > per_chip:
                pixels = pixels[:, rng.choice(pixels.shape[1], per_chip, replace=False)]
            samples.append(pixels)
        stats = percentiles(np.concatenate(samples, axis=1))
        return {"dtype": raster_dtype(self.pairs[chips[0]][0]), "bands": self.bands, **stats}

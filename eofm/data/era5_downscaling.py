"""ERA5 downscaling: fine-grid targets and their coarse-grid inputs from the same record.

A sample is one time step: the target variables on the fine grid (e.g. 0.25 degrees) and
the input variables averaged over ``factor x factor`` blocks (1 degree for factor 4),
the coarse grid a downscaling model sees (the "perfect model" set-up of Harder et al.,
JMLR 2023). The grid is cropped to a multiple of the factor from its north-west corner.
Splits are chronological; with ``data.split`` they are geographic instead (RainShift:
Gupta et al., 2025): every time step is in every split, and each split scores only the
cells of its regions (the training loss sees only the training regions). Inputs and
targets are standardised with the training split's statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from eofm.data.era5 import (
    ERA5_NAMES,
    WeatherSpec,
    chronological_splits,
    dataset_files,
    open_standardised,
)
from eofm.data.splits import SPLITS, SplitLoaders
from eofm.errors import EofmError

log = logging.getLogger(__name__)


def block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """``(..., H, W)`` -> ``(..., H/f, W/f)`` means over ``f x f`` blocks (NaN-aware)."""
    h, w = values.shape[-2:]
    blocks = values.reshape(*values.shape[:-2], h // factor, factor, w // factor, factor)
    with np.errstate(invalid="ignore"):
        return np.nanmean(blocks, axis=(-3, -1))


class ERA5Fields:
    """The surface variables of an ERA5 dataset on its (cropped) grid, read lazily."""

    def __init__(
        self,
        root: Path,
        names: Sequence[str],
        *,
        factor: int,
        layout: str = "auto",
        lat_range: Sequence[float] | None = None,
        lon_range: Sequence[float] | None = None,
        flip_latitude: bool = False,
    ) -> None:
        spec = WeatherSpec([], [], [], [], lat_range=lat_range, lon_range=lon_range)
        spec.flip_latitude = flip_latitude
        self.root = Path(root)
        found: dict[str, Any] = {}
        for path in dataset_files(self.root, layout):
            ds = open_standardised(path, spec)
            for var, array in ds.data_vars.items():
                if "time" in array.dims and not {"level", "model_level"} & set(array.dims):
                    found.setdefault(ERA5_NAMES.get(str(var), str(var)), array)
        missing = [n for n in names if n not in found]
        if missing:
            raise EofmError(
                f"Variable(s) {missing} are not surface variables of {self.root} (it holds "
                f"{sorted(found)})."
            )
        self.arrays = {n: found[n].transpose("time", "latitude", "longitude") for n in names}
        first = self.arrays[names[0]]
        self.times = first["time"].values
        lat, lon = first["latitude"].values, first["longitude"].values
        rows, cols = len(lat) - len(lat) % factor, len(lon) - len(lon) % factor
        if rows < factor or cols < factor:
            raise EofmError(f"The grid of {self.root} is smaller than one {factor}x{factor} block.")
        self.lat, self.lon = lat[:rows], lon[:cols]
        for name, array in self.arrays.items():
            if array.shape[1:] != first.shape[1:] or not np.array_equal(
                array["time"].values, self.times
            ):
                raise EofmError(
                    f"{name} in {self.root} is not on the grid and times of {names[0]}."
                )

    def read(self, name: str, step: int) -> np.ndarray:
        values = self.arrays[name].isel(time=step).values
        return np.asarray(values[: len(self.lat), : len(self.lon)], dtype=np.float32)


class DownscalingDataset(Dataset):
    def __init__(
        self, module: ERA5DownscalingDataModule, steps: Sequence[int], mask: np.ndarray | None
    ) -> None:
        self.module, self.steps, self.mask = module, list(steps), mask

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> dict:
        m, step = self.module, self.steps[index]
        fine = {n: m.fields.read(n, step) for n in {*m.inputs, *m.targets}}
        coarse = np.stack([block_mean(fine[n], m.factor) for n in m.inputs])
        coarse = np.nan_to_num((coarse - m.input_mean[:, None, None]) / m.input_std[:, None, None])
        target = np.stack([fine[n] for n in m.targets])
        valid = np.isfinite(target)
        if self.mask is not None:
            valid &= self.mask[None]
        coarse_target = np.stack([block_mean(fine[n], m.factor) for n in m.targets])
        return {
            "coarse": torch.from_numpy(coarse.astype(np.float32)),
            "coarse_target": torch.from_numpy(np.nan_to_num(coarse_target).astype(np.float32)),
            "target": torch.from_numpy(np.nan_to_num(target).astype(np.float32)),
            "valid": torch.from_numpy(valid),
            "time": str(m.fields.times[step])[:16],
        }


class ERA5DownscalingDataModule(SplitLoaders, L.LightningDataModule):
    """Chronological (or geographic) splits, statistics and loaders for downscaling."""

    name = "era5_downscaling"

    def __init__(
        self,
        root: str | Path,
        *,
        inputs: Sequence[str],
        targets: Sequence[str],
        factor: int = 4,
        layout: str = "auto",
        lat_range: Sequence[float] | None = None,
        lon_range: Sequence[float] | None = None,
        flip_latitude: bool = False,
        split: Mapping[str, Any] | None = None,
        split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
        **_: Any,
    ) -> None:
        super().__init__()
        self.inputs, self.targets, self.factor = list(inputs), list(targets), factor
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.fields = ERA5Fields(
            Path(root),
            sorted({*self.inputs, *self.targets}),
            factor=factor,
            layout=layout,
            lat_range=lat_range,
            lon_range=lon_range,
            flip_latitude=flip_latitude,
        )
        self.root = self.fields.root
        steps = list(range(len(self.fields.times)))
        self.masks: dict[str, np.ndarray | None] = dict.fromkeys(SPLITS)
        self.regions: dict[str, str | None] = {}
        if split:
            self.splits = {s: steps for s in SPLITS}
            self.masks = self._region_masks(split)
        else:
            self.splits = chronological_splits(steps, split_fractions, self.root)
        if input_mean is None or target_mean is None:
            stats = self._statistics()
            input_mean, input_std = input_mean or stats[0], input_std or stats[1]
            target_mean, target_std = target_mean or stats[2], target_std or stats[3]
        self.input_mean = np.asarray(input_mean, np.float32)
        self.input_std = np.asarray(input_std, np.float32)
        self.mean, self.std = [float(v) for v in target_mean], [float(v) for v in target_std]
        self.input_stats = ([float(v) for v in input_mean], [float(v) for v in input_std])
        self.lat = torch.from_numpy(self.fields.lat.astype(np.float32))
        self.lon = torch.from_numpy(self.fields.lon.astype(np.float32))
        log.info(
            "ERA5 downscaling %s: %d x %d -> %d x %d cells, %s",
            self.root,
            len(self.fields.lat) // factor,
            len(self.fields.lon) // factor,
            len(self.fields.lat),
            len(self.fields.lon),
            ", ".join(f"{s} {len(v)} steps" for s, v in self.splits.items()),
        )

    def _region_masks(self, value: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Cell masks of the splits from the regions of the fine cells' centres."""
        from eofm.data.regions import assign_regions, parse_region_split, split_by_region

        spec = parse_region_split(value, str(self.root))
        spec.id_fraction = 0.0
        lat, lon = self.fields.lat, (self.fields.lon + 180.0) % 360.0 - 180.0
        centres = {
            f"{i}:{j}": (float(lat[i]), float(lon[j]))
            for i in range(len(lat))
            for j in range(len(lon))
        }
        self.regions = assign_regions(centres, spec)
        by_split = split_by_region(self.regions, spec, f"the grid of {self.root}")
        masks = {}
        for split in SPLITS:
            mask = np.zeros((len(lat), len(lon)), bool)
            for key in by_split[split]:
                i, j = (int(v) for v in key.split(":"))
                mask[i, j] = True
            masks[split] = mask
        return masks

    def _statistics(self) -> tuple[list[float], ...]:
        """Mean and std of the coarse inputs and of the fine targets over training steps."""
        train = self.splits["train"]
        mask = self.masks["train"]
        stats: list[list[float]] = [[], [], [], []]
        for name in self.inputs:
            values = np.stack([block_mean(self.fields.read(name, s), self.factor) for s in train])
            finite = values[np.isfinite(values)]
            stats[0].append(float(finite.mean()))
            stats[1].append(float(finite.std()) or 1.0)
        for name in self.targets:
            values = np.stack([self.fields.read(name, s) for s in train])
            if mask is not None:
                values = values[:, mask]
            finite = values[np.isfinite(values)]
            if not finite.size:
                raise EofmError(f"Target {name} has no finite value in the training split.")
            stats[2].append(float(finite.mean()))
            stats[3].append(float(finite.std()) or 1.0)
        return tuple(stats)

    def dataset(self, split: str) -> DownscalingDataset:
        return DownscalingDataset(self, self.splits[split], self.masks[split])

    @staticmethod
    def collate(samples: list[dict]) -> dict:
        out = {
            k: torch.stack([s[k] for s in samples])
            for k in ("coarse", "coarse_target", "target", "valid")
        }
        out["time"] = [s["time"] for s in samples]
        return out

    def augmentations(self) -> list[str]:
        return []

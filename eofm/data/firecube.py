"""Next-day wildfire danger from a datacube in the Mesogeos / FireCube layout.

Kondylatos et al., "Mesogeos: A multi-purpose dataset for data-driven wildfire modeling in
the Mediterranean", NeurIPS 2023 Datasets & Benchmarks; Prapas et al., "FireCube",
Zenodo 2022. The cube is a zarr store (or NetCDF) with dims ``(time, y, x)`` on a 1 km
grid: daily dynamic variables, static variables ``(y, x)``, and the targets
``ignition_points`` (burned hectares of fires that started that day) and
``burned_areas`` (0/1).

A sample is a pixel (or a ``patch`` x ``patch`` window) at day *t*: the dynamic variables
of days *t-L+1 .. t*, the static variables, the day of year of *t+1*, and the label: an
ignition at *t+1* (above ``min_burned_ha``), or a burned pixel. Positives are every such
event whose history and window fit in the cube; negatives are drawn, ``negative_ratio``
per positive, at random among the non-events or (``buffer``) only outside a space-time
box around every positive, as Mesogeos' track A does. Splits are by the year of the label
day, so no day serves two splits. Variables are standardised on the training samples;
missing values become 0 afterwards.

The cube's layers are read into memory once (fine for regional cubes; a continental cube
needs a chunked reader, not written yet).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from eofm.data.loading import loader_options
from eofm.data.splits import SPLITS, SplitLoaders
from eofm.errors import EofmError

log = logging.getLogger(__name__)


def open_cube(root: Path) -> Any:
    import xarray as xr

    root = Path(root)
    if not root.exists():
        raise EofmError(f"data.root {root} does not exist.")
    try:
        if root.is_dir():
            return xr.open_zarr(root)
        return xr.open_dataset(root)
    except Exception as exc:
        raise EofmError(f"Cannot open the datacube {root}: {exc}") from None


def check_cube(
    cube: Any, root: Path, dynamic: Sequence[str], static: Sequence[str], target: str
) -> None:
    """Every requested layer exists, with the dims the layout says, on one grid."""
    if target not in cube:
        raise EofmError(f"Datacube {root} has no target layer '{target}' (data.target).")
    for name in [*dynamic, *static]:
        if name not in cube:
            kind = "dynamic" if name in dynamic else "static"
            raise EofmError(f"Datacube {root} has no {kind} variable '{name}' (data.{kind}_vars).")
    for name in [*dynamic, target]:
        if cube[name].dims != ("time", "y", "x"):
            raise EofmError(f"{name} in {root} has dims {cube[name].dims}, expected (time, y, x).")
    y, x = cube[target]["y"].values, cube[target]["x"].values
    for name in static:
        da = cube[name]
        if da.dims != ("y", "x") or not (
            np.array_equal(da["y"].values, y) and np.array_equal(da["x"].values, x)
        ):
            raise EofmError(
                f"Static variable {name} in {root} is not on the dynamic variables' grid "
                f"(dims {da.dims}, {da.sizes.get('y')}x{da.sizes.get('x')} vs {len(y)}x{len(x)})."
            )


class FireCubeDataModule(SplitLoaders, L.LightningDataModule):
    """Samples of next-day fire danger, split by year; everything checked up front."""

    name = "firecube"

    def __init__(
        self,
        root: str | Path,
        *,
        dynamic_vars: Sequence[str],
        static_vars: Sequence[str],
        target: str = "ignition_points",
        min_burned_ha: float = 0.0,
        lag_days: int = 10,
        patch: int = 1,
        negative_ratio: float = 2.0,
        negative_strategy: str = "buffer",
        buffer_pixels: int = 2,
        buffer_days: int = 3,
        split_years: dict[str, list[int]] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        **_: Any,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        cube = open_cube(self.root)
        check_cube(cube, self.root, dynamic_vars, static_vars, target)
        times = cube["time"].values
        if lag_days >= len(times):
            raise EofmError(
                f"data.lag_days {lag_days} needs more than the {len(times)} days the cube "
                f"{self.root} records."
            )
        self.dynamic_vars, self.static_vars = list(dynamic_vars), list(static_vars)
        self.lag, self.patch = lag_days, patch
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.pin_memory = pin_memory
        labels = np.nan_to_num(cube[target].values.astype(np.float32)) > (
            min_burned_ha if target == "ignition_points" else 0.0
        )
        years = times.astype("datetime64[Y]").astype(int) + 1970
        self.year_of_day = years
        self.doy = (times.astype("datetime64[D]") - times.astype("datetime64[Y]")).astype(int) + 1
        index = self._sample_index(
            labels, negative_ratio, negative_strategy, buffer_pixels, buffer_days
        )
        self.splits = self._split(index, years, split_years)
        dynamic = np.stack([cube[v].values.astype(np.float32) for v in self.dynamic_vars], axis=1)
        static = np.stack([cube[v].values.astype(np.float32) for v in self.static_vars], axis=0)
        train = self.splits["train"]
        self.mean, self.std = self._statistics(dynamic, static, train)
        self.tensors = {
            split: self._materialise(dynamic, static, labels, rows)
            for split, rows in self.splits.items()
        }
        counts = {
            s: (len(r), int(labels[r[:, 0], r[:, 1], r[:, 2]].sum()))
            for s, r in self.splits.items()
        }
        log.info(
            "Fire cube %s: %s",
            self.root,
            ", ".join(f"{s} {n} samples ({p} positive)" for s, (n, p) in counts.items()),
        )

    def _sample_index(self, labels, ratio, strategy, bp, bd) -> np.ndarray:
        """(label day, y, x) of every positive and of the drawn negatives."""
        t, h, w = labels.shape
        r = self.patch // 2
        inside = np.zeros_like(labels)
        inside[self.lag :, r : h - r, r : w - r] = True
        positives = np.argwhere(labels & inside)
        if not len(positives):
            raise EofmError(f"The cube {self.root} has no positive (target event) to learn from.")
        excluded = labels
        if strategy == "buffer":
            from scipy.ndimage import binary_dilation

            box = np.ones((2 * bd + 1, 2 * bp + 1, 2 * bp + 1), bool)
            excluded = binary_dilation(labels, structure=box)
        candidates = np.argwhere(~excluded & inside)
        rng = np.random.default_rng(self.seed)
        count = min(len(candidates), int(round(ratio * len(positives))))
        negatives = candidates[rng.choice(len(candidates), count, replace=False)]
        return np.concatenate([positives, negatives])

    def _split(self, index: np.ndarray, years: np.ndarray, split_years) -> dict[str, np.ndarray]:
        label_years = years[index[:, 0]]
        if split_years is None:
            present = sorted(set(label_years.tolist()))
            if len(present) < 3:
                raise EofmError(
                    f"The cube {self.root} has samples in {len(present)} year(s); a split by year "
                    "needs 3 (or set data.split_years)."
                )
            split_years = {"train": present[:-2], "val": [present[-2]], "test": [present[-1]]}
        splits = {}
        for split in SPLITS:
            rows = index[np.isin(label_years, split_years[split])]
            if not len(rows):
                raise EofmError(
                    f"data.split_years leaves the {split} split empty ({split_years[split]})."
                )
            splits[split] = rows
        return splits

    def _window(self, array: np.ndarray, rows: np.ndarray, lag: bool) -> np.ndarray:
        r, p = self.patch // 2, self.patch
        dy = np.arange(p) - r
        ys = rows[:, 1, None] + dy  # (N, p)
        xs = rows[:, 2, None] + dy
        if not lag:  # static: (C, H, W) -> (N, C, p, p)
            return array[:, ys[:, :, None], xs[:, None, :]].transpose(1, 0, 2, 3)
        days = rows[:, 0, None] - 1 - np.arange(self.lag)[::-1]  # t-L+1 .. t, t = label day - 1
        # (T, C, H, W) -> (N, L, C, p, p)
        out = array[days[:, :, None, None], :, ys[:, None, :, None], xs[:, None, None, :]]
        return out.transpose(0, 1, 4, 2, 3)

    def _statistics(self, dynamic, static, rows) -> tuple[list[float], list[float]]:
        d = self._window(dynamic, rows, True)
        s = self._window(static, rows, False)
        values = [d[:, :, c] for c in range(d.shape[2])] + [s[:, c] for c in range(s.shape[1])]
        mean = [float(np.nanmean(v)) for v in values]
        std = [float(np.nanstd(v)) or 1.0 for v in values]
        return mean, std

    def _materialise(self, dynamic, static, labels, rows) -> dict[str, torch.Tensor]:
        cd = len(self.dynamic_vars)
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        d = (self._window(dynamic, rows, True) - mean[:cd, None, None]) / std[:cd, None, None]
        s = (self._window(static, rows, False) - mean[cd:, None, None]) / std[cd:, None, None]
        return {
            "dynamic": torch.from_numpy(np.nan_to_num(d).astype(np.float32)),
            "static": torch.from_numpy(np.nan_to_num(s).astype(np.float32)),
            "doy": torch.from_numpy(self.doy[rows[:, 0]].astype(np.float32)),
            "label": torch.from_numpy(
                labels[rows[:, 0], rows[:, 1], rows[:, 2]].astype(np.float32)
            ),
        }

    def dataset(self, split: str) -> TensorDataset:
        t = self.tensors[split]
        return TensorDataset(t["dynamic"], t["static"], t["doy"], t["label"])

    @staticmethod
    def collate(samples: list) -> dict:
        dynamic, static, doy, label = (torch.stack(parts) for parts in zip(*samples, strict=True))
        return {"dynamic": dynamic, "static": static, "doy": doy, "label": label}

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train and len(self.dataset(split)) > self.batch_size,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=self.collate,
            **loader_options(self.num_workers, pin_memory=self.pin_memory),
        )

    def augmentations(self) -> list[str]:
        return []

    def label_days(self, split: str) -> list[str]:
        """The label dates of a split (ISO), for the record and the leak test."""
        rows = self.splits[split]
        cube = open_cube(self.root)
        return sorted({str(d)[:10] for d in cube["time"].values[np.unique(rows[:, 0])]})

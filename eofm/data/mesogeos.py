"""Mesogeos Track A (next-day wildfire danger) from the cube or from the released samples.

Kondylatos et al., "Mesogeos: A multi-purpose dataset for data-driven wildfire modeling in
the Mediterranean", NeurIPS 2023 Datasets & Benchmarks; code Orion-AI-Lab/mesogeos.

``data.root`` is either the cube (``mesogeos_cube.zarr``, :mod:`eofm.data.mesogeos_cube`),
sampled as the release's notebooks do (:mod:`eofm.data.track_a`), or a folder with the
released ``positives.csv`` and ``negatives.csv`` (:mod:`eofm.data.mesogeos_samples`). Both
give :class:`~eofm.data.mesogeos_samples.Samples`, which go through the same splits,
negative cut, normalisation and NaN filling, so one cube and its CSVs give the same
tensors. A sample is one pixel: ``dynamic (L, Cd, 1, 1)``, ``static (Cs, 1, 1)``, the day
of year of the fire day t+1, and the label.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import TensorDataset

from eofm.data.mesogeos_cube import LANDCOVER, MesogeosCube, fire_day_of_cube_day
from eofm.data.mesogeos_samples import (
    Samples,
    read_release_csv,
    split_by_year,
    standardise,
    statistics,
)
from eofm.data.splits import SplitLoaders
from eofm.data.track_a import (
    SampleRows,
    positive_rows,
    region_mask,
    track_a_negatives,
    uniform_negatives,
)
from eofm.errors import EofmError

log = logging.getLogger(__name__)


def cube_samples(
    cube: MesogeosCube,
    dynamic: Sequence[str],
    static: Sequence[str],
    *,
    lag: int,
    min_ha: float,
    sampling: str,
    ratio: float,
    patch: int,
    min_class_fires: int,
    landcover_date: str,
    buffer: tuple[int, int],
    mask: str,
    mask_filter: dict[str, Any],
    seed: int,
) -> tuple[Samples, np.ndarray]:
    """Track A samples of a cube and their ``(t, y, x)`` rows."""
    needed = ["t2m", "ignition_points"] + (
        ["burned_areas", *LANDCOVER] if sampling == "track_a" else []
    )
    cube.require(list(dict.fromkeys([*dynamic, *needed])), "dynamic input or label")
    cube.require(static, "static input")
    if patch > min(cube.height, cube.width):
        raise EofmError(
            f"data.exclusion_px {patch} is wider than the {cube.height} x {cube.width} grid of "
            f"{cube.root}; set a smaller odd value."
        )
    inside = region_mask(cube, mask, mask_filter)
    positives = positive_rows(cube, min_ha, lag, patch, inside)
    if not len(positives.rows):
        raise EofmError(
            f"The cube {cube.root} has no fire of {min_ha} ha or more with {lag} days of "
            "history inside the grid's border and mask."
        )
    if sampling == "track_a":
        _, cover = cube.gather(positives.rows, 1, [], LANDCOVER)
        negatives = track_a_negatives(
            cube, positives, cover, ratio=ratio, lag=lag, patch=patch, inside=inside,
            min_fires=min_class_fires, landcover_date=landcover_date, seed=seed,
        )  # fmt: skip
    else:
        box = (buffer[1], buffer[0], buffer[0]) if sampling == "buffer" else (0, 0, 0)
        negatives = uniform_negatives(cube, positives, ratio=ratio, lag=lag, box=box, seed=seed)
    where = SampleRows(
        np.concatenate([positives.rows, negatives.rows]),
        np.concatenate([positives.label, negatives.label]),
        np.concatenate([positives.hectares, negatives.hectares]),
    )
    windows, statics = cube.gather(where.rows, lag, dynamic, static)
    samples = Samples(windows, statics, where.label, cube.times[where.rows[:, 0]], where.hectares)
    return samples, where.rows


class MesogeosDataModule(SplitLoaders, L.LightningDataModule):
    """Track A samples split by year; everything checked up front."""

    name = "mesogeos"
    drop_last_train = True

    def __init__(
        self,
        root: str | Path,
        *,
        dynamic_vars: Sequence[str],
        static_vars: Sequence[str],
        variables: dict[str, str] | None = None,
        lag_days: int = 30,
        min_burned_ha: float = 30.0,
        sampling: str = "track_a",
        negative_ratio: float = 2.0,
        exclusion_px: int = 125,
        min_class_fires: int = 50,
        landcover_date: str = "2021-01-01",
        buffer_pixels: int = 2,
        buffer_days: int = 3,
        mask: str = "",
        mask_filter: dict[str, Any] | None = None,
        split_years: dict[str, list[int]] | None = None,
        read_budget_mb: int = 512,
        batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        weather: Any = None,
        **_: Any,
    ) -> None:
        super().__init__()
        from eofm.data.mesogeos_config import TRACK_A_SPLITS

        self.root = Path(root)
        self.dynamic_vars, self.static_vars = list(dynamic_vars), list(static_vars)
        self.variables = dict(variables or {})
        self.lag, self.read_budget_mb = lag_days, read_budget_mb
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.pin_memory = pin_memory
        self.weather = None
        if weather is not None:
            raise EofmError("data.weather_run is not supported with data.name: mesogeos.")
        self.rows: np.ndarray | None = None
        if (self.root / "positives.csv").exists() or (self.root / "negatives.csv").exists():
            self.samples = read_release_csv(
                self.root, self.dynamic_vars, self.static_vars, lag_days
            )
        else:
            cube = MesogeosCube(self.root, self.variables, read_budget_mb << 20)
            self.samples, self.rows = cube_samples(
                cube, self.dynamic_vars, self.static_vars, lag=lag_days,
                min_ha=min_burned_ha, sampling=sampling, ratio=negative_ratio,
                patch=exclusion_px, min_class_fires=min_class_fires,
                landcover_date=landcover_date, buffer=(buffer_pixels, buffer_days),
                mask=mask, mask_filter=dict(mask_filter or {}), seed=seed,
            )  # fmt: skip
        years = split_years or TRACK_A_SPLITS
        self.splits = split_by_year(self.samples, years, negative_ratio, seed, str(self.root))
        train = self.samples.take(self.splits["train"])
        names = [*self.dynamic_vars, *self.static_vars]
        self.mean, self.std = statistics(train, names, str(self.root))
        self.tensors = {split: self._tensors(index) for split, index in self.splits.items()}
        log.info(
            "Mesogeos %s: %s",
            self.root,
            ", ".join(
                f"{s} {len(i)} samples ({int(self.samples.label[i].sum())} positive)"
                for s, i in self.splits.items()
            ),
        )

    def _tensors(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        part = self.samples.take(index)
        dynamic, static = standardise(part.dynamic, part.static, self.mean, self.std)
        fire_day = part.day + np.timedelta64(1, "D")
        doy = (fire_day - fire_day.astype("datetime64[Y]")).astype(int) + 1
        return {
            "dynamic": torch.from_numpy(np.ascontiguousarray(dynamic[..., None, None])),
            "static": torch.from_numpy(np.ascontiguousarray(static[..., None, None])),
            "doy": torch.from_numpy(doy.astype(np.float32)),
            "label": torch.from_numpy(part.label.astype(np.float32)),
        }

    def dataset(self, split: str) -> TensorDataset:
        t = self.tensors[split]
        return TensorDataset(t["dynamic"], t["static"], t["doy"], t["label"])

    @staticmethod
    def collate(samples: list) -> dict:
        dynamic, static, doy, label = (torch.stack(parts) for parts in zip(*samples, strict=True))
        return {"dynamic": dynamic, "static": static, "doy": doy, "label": label}

    def augmentations(self) -> list[str]:
        return []

    def label_days(self, split: str) -> list[str]:
        """The fire days (t+1) of a split (ISO)."""
        days = self.samples.day[self.splits[split]]
        return sorted({str(fire_day_of_cube_day(d)) for d in np.unique(days)})

    def manifest_inputs(self) -> dict[str, Any]:
        """What a danger map needs beyond the variable lists (``model.json``)."""
        return {
            "dataset": self.name,
            "variables": self.variables,
            "fill": "window_mean",
            "read_budget_mb": self.read_budget_mb,
        }

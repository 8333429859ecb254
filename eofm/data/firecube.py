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

The cube is never read whole (:mod:`eofm.data.cube_reader`): events are scanned a block
of days at a time, negatives are drawn by rejection against the events, and each
sample's window is gathered from reads bounded in space and time, so a continental cube
takes the memory of its samples, not of its grid.
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

from eofm.data.cube_reader import CubeReader
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


def standardise_windows(
    dynamic: np.ndarray, static: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Windows standardised with the training statistics; missing values become 0 (in
    place: the raw windows are not needed afterwards)."""
    cd = dynamic.shape[2]
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    dynamic -= mean[:cd, None, None]
    dynamic /= std[:cd, None, None]
    static -= mean[cd:, None, None]
    static /= std[cd:, None, None]
    return np.nan_to_num(dynamic, copy=False), np.nan_to_num(static, copy=False)


def weather_windows(
    weather: Any,
    rows: np.ndarray,
    times: np.ndarray,
    coords: tuple[np.ndarray, np.ndarray],
    lag: int,
    patch: int,
) -> np.ndarray:
    """``(N, L, F, p, p)`` weather features of samples ``(label day, y, x)``: the days
    ``t-L+1 .. t`` before each label day, at each window pixel's nearest weather cell."""
    from eofm.data.weather_features import gather

    history = rows[:, 0, None] - lag + np.arange(lag)  # (N, L) cube day indices
    needed, day_index = np.unique(history, return_inverse=True)
    grids = weather.daily(times[needed].astype("datetime64[D]"))
    grid_rows, grid_cols = weather.cell_index(*coords)
    return gather(grids, day_index.reshape(history.shape), grid_rows, grid_cols, rows, patch)


def draw_negatives(
    events: np.ndarray,
    count: int,
    *,
    low: tuple[int, int, int],
    high: tuple[int, int, int],
    box: tuple[int, int, int],
    seed: int,
    rounds: int = 50,
) -> np.ndarray:
    """``count`` distinct ``(day, y, x)`` drawn uniformly in ``[low, high)`` with no event
    within ``box`` (half-widths in days, rows, columns; a Chebyshev neighbourhood)."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    scale = 1.0 / (np.asarray(box, np.float64) + 0.5)  # |d| <= b  <=>  |d| * scale < 1
    tree = cKDTree(events * scale) if len(events) else None
    low_, high_ = np.asarray(low), np.asarray(high)
    space = int(np.prod(np.maximum(high_ - low_, 0)))
    kept = np.zeros((0, 3), np.int64)
    for _ in range(rounds):
        if len(kept) >= count or space == 0:
            break
        draws = rng.integers(low_, high_, size=(max(2 * (count - len(kept)), 64), 3))
        if tree is not None:
            distance, _ = tree.query(draws * scale, k=1, p=np.inf, distance_upper_bound=1.0)
            draws = draws[~np.isfinite(distance)]
        kept = np.unique(np.concatenate([kept, draws]), axis=0)
    if len(kept) > count:
        kept = kept[rng.permutation(len(kept))[:count]]
    return kept[np.lexsort(kept.T[::-1])]


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
    drop_last_train = True  # a last batch of one breaks BatchNorm in training

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
        split_dates: dict[str, list[str]] | None = None,
        split: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        weather: Any = None,
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
        self.reader = CubeReader(cube, self.dynamic_vars, self.static_vars)
        threshold = min_burned_ha if target == "ignition_points" else 0.0
        events = self.reader.events(target, threshold)
        years = times.astype("datetime64[Y]").astype(int) + 1970
        self.year_of_day = years
        self.doy = (times.astype("datetime64[D]") - times.astype("datetime64[Y]")).astype(int) + 1
        index, labels = self._sample_index(
            events, negative_ratio, negative_strategy, buffer_pixels, buffer_days
        )
        if split:
            self.splits, split_labels = self._region_split(index, labels, cube, split)
        else:
            self.splits, split_labels = self._split(
                index, labels, years, split_years, split_dates, times
            )
        dynamic, static = {}, {}
        for split, rows in self.splits.items():
            dynamic[split], static[split] = self.reader.windows(rows, self.lag, self.patch)
        self.weather = weather
        if weather is not None:
            coords = (cube["y"].values, cube["x"].values)
            for split, rows in self.splits.items():
                extra = weather_windows(weather, rows, times, coords, self.lag, self.patch)
                dynamic[split] = np.concatenate([dynamic[split], extra], axis=2)
            self.dynamic_vars += weather.names
        self.mean, self.std = self._statistics(dynamic["train"], static["train"])
        self.tensors = {
            split: self._materialise(dynamic[split], static[split], split_labels[split], rows)
            for split, rows in self.splits.items()
        }
        log.info(
            "Fire cube %s: %s",
            self.root,
            ", ".join(
                f"{s} {len(r)} samples ({int(split_labels[s].sum())} positive)"
                for s, r in self.splits.items()
            ),
        )

    def _sample_index(self, events, ratio, strategy, bp, bd) -> tuple[np.ndarray, np.ndarray]:
        """``(label day, y, x)`` of every positive and of the drawn negatives, and labels.

        Negatives are drawn uniformly among the allowed positions by rejection: random
        positions are kept unless an event lies within the space-time box (``buffer``) or
        at the position itself (``random``), until ``ratio`` per positive are found.
        """
        t, h, w = self.reader.days, self.reader.height, self.reader.width
        r = self.patch // 2
        inside = (events[:, 0] >= self.lag) & (events[:, 1] >= r) & (events[:, 1] < h - r)
        inside &= (events[:, 2] >= r) & (events[:, 2] < w - r)
        positives = events[inside]
        if not len(positives):
            raise EofmError(f"The cube {self.root} has no positive (target event) to learn from.")
        box = (bd, bp, bp) if strategy == "buffer" else (0, 0, 0)
        needed = int(round(ratio * len(positives)))
        negatives = draw_negatives(
            events,
            needed,
            low=(self.lag, r, r),
            high=(t, h - r, w - r),
            box=box,
            seed=self.seed,
        )
        if len(negatives) < needed:
            log.warning(
                "The cube %s has room for %d of the %d negatives asked for.",
                self.root,
                len(negatives),
                needed,
            )
        index = np.concatenate([positives, negatives])
        labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
        return index, labels.astype(np.float32)

    def _split(
        self,
        index: np.ndarray,
        labels: np.ndarray,
        years: np.ndarray,
        split_years,
        split_dates,
        times: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        label_years = years[index[:, 0]]
        if split_dates is not None:
            days = times.astype("datetime64[D]")[index[:, 0]]
            masks = {
                s: (days >= np.datetime64(a)) & (days <= np.datetime64(b))
                for s, (a, b) in split_dates.items()
            }
            where = "data.split_dates"
        else:
            masks, where = None, "data.split_years"
        if masks is None and split_years is None:
            present = sorted(set(label_years.tolist()))
            if len(present) < 3:
                raise EofmError(
                    f"The cube {self.root} has samples in {len(present)} year(s); a split by year "
                    "needs 3 (or set data.split_years)."
                )
            split_years = {"train": present[:-2], "val": [present[-2]], "test": [present[-1]]}
        splits, split_labels = {}, {}
        for split in SPLITS:
            chosen = masks[split] if masks else np.isin(label_years, split_years[split])
            if not chosen.any():
                given = (split_dates or split_years)[split]
                raise EofmError(f"{where} leaves the {split} split empty ({given}).")
            splits[split], split_labels[split] = index[chosen], labels[chosen]
        return splits, split_labels

    def _region_split(
        self, index: np.ndarray, labels: np.ndarray, cube: Any, value: dict[str, Any]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Samples split by the region of their pixel (its cell centre, EPSG:4326 cubes);
        the in-distribution share of :mod:`eofm.data.regions` is not used here."""
        from eofm.data.regions import assign_regions, parse_region_split, split_by_region

        spec = parse_region_split(value, str(self.root))
        spec.id_fraction = 0.0
        ys, xs = cube["y"].values, cube["x"].values
        pixels = np.unique(index[:, 1:], axis=0)
        keys = [f"{y}:{x}" for y, x in pixels]
        centres = {k: (float(ys[y]), float(xs[x])) for k, (y, x) in zip(keys, pixels, strict=True)}
        self.regions = assign_regions(centres, spec)
        by_key = split_by_region(self.regions, spec, f"the cube {self.root}")
        role = {k: split for split, members in by_key.items() for k in members}
        sample_keys = np.array([f"{y}:{x}" for y, x in index[:, 1:]])
        splits, split_labels = {}, {}
        for split in SPLITS:
            chosen = np.array([role.get(k) == split for k in sample_keys])
            splits[split], split_labels[split] = index[chosen], labels[chosen]
        return splits, split_labels

    def _statistics(
        self, dynamic: np.ndarray, static: np.ndarray
    ) -> tuple[list[float], list[float]]:
        """Per-variable mean and std of the training windows (NaN left out); a variable
        with no value in any training window is refused (its mean would be NaN, and the
        model would learn from a constant)."""
        values = [dynamic[:, :, c] for c in range(dynamic.shape[2])]
        values += [static[:, c] for c in range(static.shape[1])]
        names = [*self.dynamic_vars, *self.static_vars]
        empty = [name for name, v in zip(names, values, strict=True) if not np.isfinite(v).any()]
        if empty:
            raise EofmError(
                f"Input variable(s) {empty} of the cube {self.root} have no finite value in "
                f"any training window ({len(dynamic)} samples): all NaN. Remove them from "
                "data.dynamic_vars / data.static_vars, or fill them in the cube.",
                exit_code=2,
            )
        mean = [float(np.nanmean(v)) for v in values]
        std = [float(np.nanstd(v)) or 1.0 for v in values]
        return mean, std

    def _materialise(self, dynamic, static, labels, rows) -> dict[str, torch.Tensor]:
        d, s = standardise_windows(dynamic, static, self.mean, self.std)
        return {
            "dynamic": torch.from_numpy(d),
            "static": torch.from_numpy(s),
            "doy": torch.from_numpy(self.doy[rows[:, 0]].astype(np.float32)),
            "label": torch.from_numpy(labels.astype(np.float32)),
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

    def manifest_inputs(self) -> dict[str, Any]:
        """Nothing beyond the variable lists: windows end the day before the label day."""
        return {}

    def label_days(self, split: str) -> list[str]:
        """The label dates of a split (ISO), for the record and the leak test."""
        rows = self.splits[split]
        cube = open_cube(self.root)
        return sorted({str(d)[:10] for d in cube["time"].values[np.unique(rows[:, 0])]})

"""Track A samples as arrays: the released CSVs, the splits, normalisation and NaN filling.

Orion-AI-Lab/mesogeos, ``ml_tracks/a.fire_danger/datasets/dataset.py`` (``FireDataset``):

- ``positives.csv`` and ``negatives.csv`` hold 30 rows per sample, one per day of the
  window, oldest first, with ``time``, ``sample``, ``burned_area_has`` and one column per
  variable (the sample notebooks write ``Dataset.to_dataframe()`` of the window's cell);
  a sample's year is the year of its last row; static inputs are read from its first row;
- splits by that year (val 2020, test 2021 and 2022, train the rest); per split, the
  negatives are cut to ``neg_pos_ratio`` per positive by a draw without replacement;
- inputs are z-scored, then a missing dynamic value takes the mean of its variable over
  the sample's own window, and what is still missing (and missing statics) becomes 0.

Here the z-score uses the training split's mean and (n-1) standard deviation for every
split (``dataset.py`` scores each split with its own statistics), so the danger map
scores with the same numbers; a variable with no value in the training samples is refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eofm.errors import EofmError

#: Rows per sample in the released CSVs.
CSV_DAYS = 30


@dataclass
class Samples:
    """Raw Track A samples: windows, labels and the cube day t ending each window."""

    dynamic: np.ndarray  # (N, L, Cd) float32
    static: np.ndarray  # (N, Cs) float32
    label: np.ndarray  # (N,) float32
    day: np.ndarray  # (N,) datetime64[D], the window's last day (the day before the fire)
    hectares: np.ndarray  # (N,) burned hectares of positives, 0 for negatives

    def take(self, index: np.ndarray) -> Samples:
        return Samples(
            self.dynamic[index], self.static[index], self.label[index], self.day[index],
            self.hectares[index],
        )  # fmt: skip

    @staticmethod
    def concat(parts: Sequence[Samples]) -> Samples:
        return Samples(
            *(np.concatenate(arrays) for arrays in zip(*(p.astuple() for p in parts), strict=True))
        )

    def astuple(self) -> tuple[np.ndarray, ...]:
        return self.dynamic, self.static, self.label, self.day, self.hectares


def read_release_csv(
    folder: Path, dynamic: Sequence[str], static: Sequence[str], lag: int = CSV_DAYS
) -> Samples:
    """The released ``positives.csv`` and ``negatives.csv`` of ``folder``."""
    import pandas as pd

    if lag > CSV_DAYS:
        raise EofmError(f"data.lag_days {lag}: the released samples hold {CSV_DAYS} days.")
    parts = []
    for name, label in (("positives.csv", 1.0), ("negatives.csv", 0.0)):
        path = Path(folder) / name
        if not path.is_file():
            raise EofmError(f"{path} does not exist (the released Track A samples have both CSVs).")
        wanted = ["time", "sample", "burned_area_has", *dynamic, *static]
        header = pd.read_csv(path, nrows=0).columns
        missing = [c for c in wanted if c not in header]
        if missing:
            raise EofmError(f"{path} has no column '{missing[0]}'.")
        table = pd.read_csv(path, usecols=wanted)
        rows = len(table)
        ids = table["sample"].to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        lengths = np.diff(np.r_[starts, rows])
        broken = np.flatnonzero(lengths != CSV_DAYS)
        if rows % CSV_DAYS or len(broken):
            at = starts[broken[0]] if len(broken) else rows - rows % CSV_DAYS
            raise EofmError(
                f"{path} has {rows} rows, not whole samples of {CSV_DAYS} days: sample "
                f"{ids[at]} (from row {at + 2}, time {table['time'].iloc[at]}) has "
                f"{lengths[broken[0]] if len(broken) else rows % CSV_DAYS} rows."
            )
        n = rows // CSV_DAYS
        values = table[list(dynamic)].to_numpy(np.float32).reshape(n, CSV_DAYS, len(dynamic))
        statics = table[list(static)].to_numpy(np.float32).reshape(n, CSV_DAYS, len(static))
        times = pd.to_datetime(table["time"]).to_numpy().astype("datetime64[D]")
        parts.append(
            Samples(
                np.ascontiguousarray(values[:, -lag:]),
                np.ascontiguousarray(statics[:, 0]),
                np.full(n, label, np.float32),
                times[CSV_DAYS - 1 :: CSV_DAYS],
                table["burned_area_has"].to_numpy(np.float32)[::CSV_DAYS],
            )
        )
    return Samples.concat(parts)


def split_by_year(
    samples: Samples, years: dict[str, list[int]], ratio: float, seed: int, where: str
) -> dict[str, np.ndarray]:
    """Sample indices per split: every positive of the split's years, then its negatives
    cut to ``ratio`` per positive (``dataset.py``'s ``random_``, seeded)."""
    rng = np.random.default_rng(seed)
    year = samples.day.astype("datetime64[Y]").astype(int) + 1970
    out = {}
    for split in ("train", "val", "test"):
        chosen = np.isin(year, years[split])
        positives = np.flatnonzero(chosen & (samples.label == 1))
        negatives = np.flatnonzero(chosen & (samples.label == 0))
        if not len(positives):
            present = sorted(set(year[samples.label == 1].tolist()))
            raise EofmError(
                f"data.split_years.{split} {years[split]} holds no positive in {where} "
                f"(positives fall in {present})."
            )
        wanted = int(len(positives) * ratio)
        if len(negatives) > wanted:
            negatives = np.sort(rng.choice(negatives, wanted, replace=False))
        out[split] = np.concatenate([positives, negatives])
    return out


def statistics(
    samples: Samples, names: Sequence[str], where: str
) -> tuple[list[float], list[float]]:
    """Per-variable mean and (n-1) std over the training windows; an all-NaN one is refused."""
    cd = samples.dynamic.shape[2]
    columns = [samples.dynamic[:, :, c].ravel() for c in range(cd)]
    columns += [samples.static[:, c] for c in range(samples.static.shape[1])]
    mean, std = [], []
    for name, values in zip(names, columns, strict=True):
        finite = values[np.isfinite(values)]
        if not finite.size:
            raise EofmError(f"Variable '{name}' has no value in the training samples of {where}.")
        mean.append(float(finite.mean()))
        spread = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
        std.append(spread if spread > 0 else 1.0)
    return mean, std


def standardise(
    dynamic: np.ndarray, static: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """z-scores; a missing dynamic value takes its window's mean, then 0 (``dataset.py``)."""
    cd = dynamic.shape[-1]
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    dynamic = (dynamic - m[:cd]) / s[:cd]
    static = (static - m[cd:]) / s[cd:]
    missing = np.isnan(dynamic)
    if missing.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            window_mean = np.nanmean(dynamic, axis=1, keepdims=True)  # (N, 1, Cd)
        dynamic = np.where(missing, np.broadcast_to(window_mean, dynamic.shape), dynamic)
    return np.nan_to_num(dynamic, nan=0.0), np.nan_to_num(static, nan=0.0)

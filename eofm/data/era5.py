"""ERA5 for Aurora: per-variable NetCDF files or a WeatherBench2-style zarr -> Aurora batches.

A sample is the atmosphere at ``history_steps`` times, ``step_hours`` apart, ending at
``t``, and the target variables at ``t + lead_hours``. Everything that could fail is
checked when the datamodule is built: missing variables, coordinates, grid size, NaN in
the inputs. Splits are chronological (no sample of a later split precedes an earlier one).
Aurora's batch layout: Bodnar et al., "A foundation model for the Earth system", 2025.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from eofm.data.fire_weather import FIRE_TARGETS, era5_fire_targets
from eofm.data.model_levels import (
    DEFAULT_PRESSURE_LEVELS,
    check_level_numbers,
    describe,
    interpolate_to_pressure,
    model_level_coordinate,
)
from eofm.data.splits import SplitLoaders
from eofm.errors import EofmError

log = logging.getLogger(__name__)

#: File variable names (ERA5 short names, WeatherBench2 long names) -> Aurora names.
ERA5_NAMES = {
    "t2m": "2t",
    "2m_temperature": "2t",
    "u10": "10u",
    "10m_u_component_of_wind": "10u",
    "v10": "10v",
    "10m_v_component_of_wind": "10v",
    "mean_sea_level_pressure": "msl",
    "temperature": "t",
    "u_component_of_wind": "u",
    "v_component_of_wind": "v",
    "specific_humidity": "q",
    "geopotential": "z",
    "geopotential_at_surface": "z",
    "land_sea_mask": "lsm",
    "soil_type": "slt",
    "total_precipitation": "tp",
    "evaporation": "e",
    "runoff": "ro",
    "volumetric_soil_water_layer_1": "swvl1",
    "surface_pressure": "sp",
    "total_column_water": "tcw",
    "2m_dewpoint_temperature": "d2m",
    "snow_depth": "sd",
    "snow_density": "rsn",
}
_LAT = ("latitude", "lat")
_LON = ("longitude", "lon")
_LEVEL = ("level", "pressure_level", "isobaricInhPa", "plev")
_TIME = ("time", "valid_time")


#: ERA5 targets that accumulate over each time step (metres of water per step), summed
#: over the lead window as targets.
ACCUMULATED = ("tp", "e")


@dataclass
class WeatherSpec:
    """What a sample holds. Names are Aurora's (``2t``, ``10u``, ``msl``, ``z``, ...)."""

    surf_vars: Sequence[str]
    atmos_vars: Sequence[str]
    static_vars: Sequence[str]
    targets: Sequence[str]
    levels: Sequence[float] | None = None
    allow_missing: Sequence[str] = ()
    history_steps: int = 2
    step_hours: int = 6
    lead_hours: int = 6
    lat_range: Sequence[float] | None = None
    lon_range: Sequence[float] | None = None
    flip_latitude: bool = False
    patch_size: int = 4
    land_only: Sequence[str] = ()
    accumulated: Sequence[str] = ()

    def accumulates(self, name: str) -> bool:
        """Whether target ``name`` is summed over the lead window (see ``ERA5Dataset``)."""
        return name in ACCUMULATED or name in self.accumulated


@dataclass
class _Field:
    name: str
    kind: str  # "surf", "atmos" or "static"
    array: Any  # xarray.DataArray, dims (time, [level,] lat, lon) or (lat, lon)
    path: Path


@dataclass
class ERA5Source:
    """The variables of one ERA5 dataset on one grid, validated, lazily read."""

    root: Path
    files: list[Path]
    fields: dict[tuple[str, str], _Field]
    times: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    levels: tuple[float, ...]
    spec: WeatherSpec
    filled_statics: dict[str, float] = field(default_factory=dict)

    def surf_names(self) -> list[str]:
        return [n for n in self.spec.surf_vars if ("surf", n) in self.fields]

    def atmos_names(self) -> list[str]:
        return [n for n in self.spec.atmos_vars if ("atmos", n) in self.fields]

    def read(self, kind: str, name: str, time_index: int | Sequence[int] | None) -> np.ndarray:
        f = self.fields[(kind, name)]
        array = f.array if time_index is None else f.array.isel(time=time_index)
        if kind == "atmos":
            array = array.sel(level=list(self.levels))
        return np.ascontiguousarray(array.values, dtype=np.float32)


def _first(names: Sequence[str], available: Mapping[str, Any]) -> str | None:
    return next((n for n in names if n in available), None)


def _open(path: Path) -> Any:
    import xarray as xr

    try:
        if path.suffix == ".zarr" or (path / "zarr.json").exists() or (path / ".zgroup").exists():
            with warnings.catch_warnings():  # unconsolidated stores are fine, if slower
                warnings.simplefilter("ignore", RuntimeWarning)
                return xr.open_zarr(path, consolidated=None)
        return xr.open_dataset(path)
    except Exception as exc:
        raise EofmError(f"Cannot open {path} as NetCDF/zarr: {exc}") from None


def _dataset_files(root: Path, layout: str) -> list[Path]:
    if not root.exists():
        raise EofmError(f"data.root {root} does not exist.")
    if layout in ("zarr", "auto") and (
        root.suffix == ".zarr" or (root / "zarr.json").exists() or (root / ".zgroup").exists()
    ):
        return [root]
    if layout == "zarr":
        stores = sorted(root.glob("*.zarr"))
        if len(stores) != 1:
            raise EofmError(f"data.layout is zarr, but {root} holds {len(stores)} *.zarr stores.")
        return stores
    files = sorted(p for p in root.glob("*.nc") if p.is_file()) if root.is_dir() else [root]
    if not files:
        stores = sorted(root.glob("*.zarr"))
        if layout == "auto" and len(stores) == 1:
            return stores
        raise EofmError(f"No NetCDF (*.nc) files or zarr store under {root}.")
    return files


def _standardise(ds: Any, path: Path, spec: WeatherSpec) -> Any:
    """Rename coordinates to time/level/latitude/longitude; check and convert them.

    Model levels (see ``model_levels.py``) are renamed ``model_level``, never ``level``:
    their numbers are not hPa.
    """
    rename = {}
    vertical = model_level_coordinate(ds, path)
    if vertical is not None:
        rename[vertical] = "model_level"
    for names, canonical in ((_LAT, "latitude"), (_LON, "longitude"), (_LEVEL, "level")):
        if vertical is not None and canonical == "level":
            continue
        found = _first(names, ds.coords) or _first(names, ds.dims)
        if found and found != canonical:
            rename[found] = canonical
    time = _first(_TIME, ds.coords)
    if time and time != "time":
        rename[time] = "time"
    ds = ds.rename(rename)
    for coord in ("latitude", "longitude"):
        if coord not in ds.coords:
            raise EofmError(f"{path} has no {coord} coordinate (looked for {_LAT + _LON}).")
    lat = ds["latitude"].values
    if spec.flip_latitude and lat.size > 1 and lat[0] < lat[-1]:
        ds = ds.isel(latitude=slice(None, None, -1))
        lat = ds["latitude"].values
    if lat.size > 1 and not np.all(np.diff(lat) < 0):
        raise EofmError(
            f"Latitudes in {path} do not strictly decrease ({lat[0]:g} .. {lat[-1]:g}); Aurora "
            "needs north-to-south order. Set data.flip_latitude=true to reverse ascending files."
        )
    lon = np.mod(ds["longitude"].values.astype(np.float64), 360.0)
    if lon.size > 1 and not np.all(np.diff(lon) > 0):
        raise EofmError(
            f"Longitudes in {path} are not strictly increasing once mapped to [0, 360); "
            "select a region that does not cross the 0° meridian with data.lon_range."
        )
    ds = ds.assign_coords(longitude=lon)
    if "level" in ds.coords:
        levels = ds["level"].values.astype(np.float64)
        if levels.max() > 2000:  # Pa -> hPa
            ds = ds.assign_coords(level=levels / 100.0)
    return ds


def _select_region(ds: Any, spec: WeatherSpec, path: Path) -> Any:
    if spec.lat_range:
        north, south = max(spec.lat_range), min(spec.lat_range)
        ds = ds.sel(latitude=slice(north + 1e-6, south - 1e-6))
    if spec.lon_range:
        west, east = (v % 360.0 for v in spec.lon_range)
        ds = ds.sel(longitude=slice(west - 1e-6, east + 1e-6))
    if ds.sizes["latitude"] == 0 or ds.sizes["longitude"] == 0:
        raise EofmError(
            f"data.lat_range {spec.lat_range} / lon_range {spec.lon_range} select no grid cell "
            f"of {path}."
        )
    return ds


def dataset_files(root: Path, layout: str = "auto") -> list[Path]:
    """The NetCDF files or zarr store of an ERA5 dataset (errors name what is missing)."""
    return _dataset_files(Path(root), layout)


def open_standardised(path: Path, spec: WeatherSpec) -> Any:
    """One file or store, coordinates standardised and checked, cropped to the region."""
    return _select_region(_standardise(_open(path), path, spec), spec, path)


def open_source(root: str | Path, spec: WeatherSpec, *, layout: str = "auto") -> ERA5Source:
    """Open, standardise and validate every file; the first failure names its file."""
    from aurora.normalisation import level_to_str, locations

    root = Path(root)
    files = _dataset_files(root, layout)
    parts: dict[tuple[str, str], list[_Field]] = {}
    grid = None
    for path in files:
        ds = open_standardised(path, spec)
        here = (ds["latitude"].values, ds["longitude"].values)
        if grid is None:
            grid = (here, path)
        elif not all(np.allclose(a, b) for a, b in zip(here, grid[0], strict=True)):
            raise EofmError(f"The grid of {path} differs from that of {grid[1]}.")
        for var, array in ds.data_vars.items():
            name = ERA5_NAMES.get(str(var), str(var))
            if "model_level" in array.dims:
                name, array = _model_level_surface(name, array, path)
            has_time = "time" in array.dims
            if "model_level" in array.dims:
                kind = "model_level"
            else:
                kind = "atmos" if "level" in array.dims else ("surf" if has_time else "static")
            if kind == "static" and "time" in array.coords:
                array = array.squeeze(drop=True)
            parts.setdefault((kind, name), []).append(_Field(name, kind, array, path))
    assert grid is not None
    lat, lon = grid[0]
    fields = {key: _join_in_time(found) for key, found in parts.items() if key[0] != "model_level"}
    for (kind, name), found in parts.items():
        if kind == "model_level":
            on_pressure = _to_pressure_levels(_join_in_time(found), fields, spec)
            fields.setdefault(("atmos", name), on_pressure)
    timed = [f for f in fields.values() if f.kind != "static"]
    if not timed:
        raise EofmError(f"No time-dependent variable in {root}.")
    times = timed[0].array["time"].values
    for f in timed:
        if f.array["time"].shape != times.shape or not np.all(f.array["time"].values == times):
            raise EofmError(f"The times of {f.name} in {f.path} differ from {timed[0].path}.")

    wanted = {
        "surf": list(spec.surf_vars),
        "atmos": list(spec.atmos_vars),
        "static": list(spec.static_vars),
    }
    missing = [
        (kind, name)
        for kind, names in wanted.items()
        for name in names
        if (kind, name) not in fields
    ]
    disallowed = [f"{name} ({kind})" for kind, name in missing if name not in spec.allow_missing]
    if disallowed:
        held = sorted(f"{n} ({k})" for k, n in fields)
        raise EofmError(
            f"Input variable(s) {', '.join(disallowed)} are missing from {root} (it holds "
            f"{', '.join(held)}). List them in data.allow_missing to train without them.",
            exit_code=2,
        )
    derived = [t for t in spec.targets if ("surf", t) not in fields]
    if derived and all(t in FIRE_TARGETS for t in derived):  # computed from the weather
        surface = {n: f.array for (k, n), f in fields.items() if k == "surf"}
        for name, array in era5_fire_targets(surface, derived, root).items():
            fields[("surf", name)] = _Field(name, "surf", array, Path(f"{root} (fire weather)"))
    for target in spec.targets:
        if ("surf", target) not in fields:
            raise EofmError(
                f"Target variable '{target}' is not a surface variable of {root} "
                f"(it holds {', '.join(sorted(n for k, n in fields if k == 'surf'))}).",
                exit_code=2,
            )
    if not any(("surf", n) in fields for n in spec.surf_vars) or not any(
        ("atmos", n) in fields for n in spec.atmos_vars
    ):
        raise EofmError(
            f"Aurora needs at least one surface and one atmospheric input variable from {root}."
        )

    levels = _levels(fields, spec, root, level_to_str, locations)
    for kind, name in fields:
        if kind == "surf" and name in spec.surf_vars and name not in locations:
            raise EofmError(f"Aurora has no normalisation statistics for surface variable {name}.")
    filled = {
        name: float(locations[name]) for kind, name in missing if kind == "static"
    }  # zero once Aurora normalises them: no signal, but the encoder needs a static field
    source = ERA5Source(root, files, fields, times, lat, lon, levels, spec, filled)
    _check_grid(source)
    return source


def _join_in_time(parts: list[_Field]) -> _Field:
    """One field from the files that hold a variable: the first of a static field, the
    time steps of all, in time order, of a timed one (ERA5 is often downloaded as one file
    per day or month: ``ERA5_2020-01-DD_<var>.nc``). A time step held twice is an error."""
    import xarray as xr

    first = parts[0]
    if len(parts) == 1 or "time" not in first.array.dims:
        return first
    parts = sorted(parts, key=lambda f: f.array["time"].values[0])
    times = np.concatenate([f.array["time"].values for f in parts])
    repeated = np.unique(times, return_counts=True)
    if (repeated[1] > 1).any():
        twice = repeated[0][repeated[1] > 1][0]
        holders = [f.path.name for f in parts if twice in f.array["time"].values]
        raise EofmError(
            f"{first.name} at {np.datetime_as_string(twice, unit='h')} is in more than one "
            f"file ({', '.join(holders)}) under {first.path.parent}; keep one."
        )
    array = xr.concat([f.array for f in parts], dim="time")
    shown = first.path.parent / f"{parts[0].path.name} .. {parts[-1].path.name}"
    return _Field(first.name, first.kind, array, shown)


def _model_level_surface(name: str, array: Any, path: Path) -> tuple[str, Any]:
    """Surface fields that model-level files carry on level 1: ``lnsp`` (the log of surface
    pressure, becomes ``sp`` in Pa) and ``z`` (surface geopotential, a static field)."""
    if array.sizes["model_level"] != 1 or name not in ("lnsp", "z"):
        return name, array
    array = array.isel(model_level=0, drop=True)
    if name == "lnsp":
        sp = np.exp(array)
        sp.attrs = {"units": "Pa", "long_name": "Surface pressure (from lnsp)"}
        return "sp", sp
    return name, (array.isel(time=0, drop=True) if "time" in array.dims else array)


def _to_pressure_levels(
    f: _Field, fields: dict[tuple[str, str], _Field], spec: WeatherSpec
) -> _Field:
    """A model-level field interpolated to ``data.levels`` (default: the 13 standard
    levels) with the surface pressure of the same times (``sp``, or ``lnsp``)."""
    import xarray as xr

    sp = fields.get(("surf", "sp"))
    levels = check_level_numbers(f.array["model_level"].values, f.path)
    if sp is None:
        raise EofmError(
            f"{f.path} holds {f.name} on ERA5 model levels; converting them to pressure levels "
            "needs the surface pressure (sp, or lnsp on model level 1) of the same times in "
            "data.root. Add it, or download the CDS pressure-level product instead."
        )
    times = f.array["time"].values
    missing = np.setdiff1d(times, sp.array["time"].values)
    if missing.size:
        raise EofmError(
            f"The surface pressure in {sp.path} lacks {missing.size} time(s) of {f.path} "
            f"(first {np.datetime_as_string(missing[0], unit='h')}), needed to convert its "
            "model levels to pressure levels."
        )
    targets = tuple(float(v) for v in (spec.levels or DEFAULT_PRESSURE_LEVELS))
    array = f.array.transpose("time", "model_level", "latitude", "longitude")
    surface = np.asarray(sp.array.sel(time=times).values, dtype=np.float64)
    values = interpolate_to_pressure(
        np.asarray(array.values, dtype=np.float64),
        levels,
        surface,
        targets,
        name=f.name,
        path=f.path,
    )
    log.info("%s -> %s hPa", describe(f.path, "level", levels), list(targets))
    attrs = dict(f.array.attrs)
    attrs["comment"] = "interpolated from ERA5 model levels (L137) in log-pressure"
    converted = xr.DataArray(
        values,
        dims=("time", "level", "latitude", "longitude"),
        coords={
            "time": times,
            "level": np.asarray(targets),
            "latitude": array["latitude"].values,
            "longitude": array["longitude"].values,
        },
        attrs=attrs,
    )
    return _Field(f.name, "atmos", converted, f.path)


def _levels(fields, spec, root, level_to_str, locations) -> tuple[float, ...]:
    atmos = [f for (kind, _), f in fields.items() if kind == "atmos" and f.name in spec.atmos_vars]
    available = [float(v) for v in atmos[0].array["level"].values]
    if spec.levels:
        levels = [float(v) for v in spec.levels]
        absent = [v for v in levels if not any(math.isclose(v, a) for a in available)]
        if absent:
            raise EofmError(
                f"data.levels {absent} hPa are not in {atmos[0].path} (levels: {available})."
            )
    else:
        levels = available
    usable = [v for v in levels if all(f"{f.name}_{level_to_str(v)}" in locations for f in atmos)]
    if spec.levels and len(usable) != len(levels):
        bad = sorted(set(levels) - set(usable))
        raise EofmError(f"Aurora has no normalisation statistics at {bad} hPa; drop them.")
    if len(usable) != len(levels):
        log.info(
            "Pressure levels without Aurora statistics are left out: %s",
            sorted(set(levels) - set(usable)),
        )
    return tuple(sorted(usable))


def _check_grid(source: ERA5Source) -> None:
    p = source.spec.patch_size
    h, w = len(source.lat), len(source.lon)
    where = source.files[0]
    if w % p:
        raise EofmError(
            f"The grid of {where} is {w} longitudes wide, not a multiple of the patch size {p}; "
            f"select {w - w % p} columns with data.lon_range."
        )
    if h % p not in (0, 1):
        raise EofmError(
            f"The grid of {where} has {h} latitudes; Aurora needs a multiple of {p} (or one "
            "more, dropped at the south edge). Select rows with data.lat_range."
        )


class ERA5Dataset(Dataset):
    """Samples at the given 'now' time indices: history inputs and normalised targets.

    A target is the field at ``now + lead``, except accumulated variables (``tp``, ``e``
    and ``data.accumulated``): ERA5 stores what fell during each time step (hourly data:
    the hour ending at the step), so their target is the sum over the steps of the lead
    window ``(now, now + lead]``, e.g. metres of water in the 6 h after ``now``.
    """

    def __init__(
        self,
        source: ERA5Source,
        now: Sequence[int],
        target_mean: Sequence[float],
        target_std: Sequence[float],
        land: np.ndarray | None,
        *,
        with_targets: bool = True,
    ) -> None:
        self.source = source
        self.with_targets = with_targets
        self.now = list(now)
        self.mean = np.asarray(target_mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(target_std, dtype=np.float32)[:, None, None]
        self.land = land
        self.rows = len(source.lat) - len(source.lat) % source.spec.patch_size
        spec = source.spec
        self.step = _steps(source.times, spec.step_hours, source.files[0])
        self.lead = _steps(source.times, spec.lead_hours, source.files[0])

    def __len__(self) -> int:
        return len(self.now)

    def target_field(self, name: str, now: int) -> np.ndarray:
        """Target ``name`` of the sample at ``now``: the value at the lead time, or the sum
        over the lead window for accumulated variables."""
        src = self.source
        if src.spec.accumulates(name):
            steps = list(range(now + 1, now + self.lead + 1))
            return src.read("surf", name, steps).sum(axis=0)
        return src.read("surf", name, now + self.lead)

    def history(self, i: int) -> list[int]:
        n = self.source.spec.history_steps
        return [i - (n - 1 - k) * self.step for k in range(n)]

    def __getitem__(self, index: int) -> dict:
        src, i, r = self.source, self.now[index], self.rows
        hist = self.history(i)
        surf = {
            n: torch.from_numpy(src.read("surf", n, hist)[..., :r, :]) for n in src.surf_names()
        }
        atmos = {
            n: torch.from_numpy(src.read("atmos", n, hist)[..., :r, :]) for n in src.atmos_names()
        }
        if not self.with_targets:
            return {"surf": surf, "atmos": atmos, "time": _to_datetime(src.times[i])}
        target = np.stack([self.target_field(n, i)[:r] for n in src.spec.targets])
        valid = np.isfinite(target)
        if self.land is not None:
            for k, name in enumerate(src.spec.targets):
                if name in src.spec.land_only:
                    valid[k] &= self.land[:r]
        target = np.where(valid, (target - self.mean) / self.std, 0.0).astype(np.float32)
        return {
            "surf": surf,
            "atmos": atmos,
            "time": _to_datetime(src.times[i]),
            "target": torch.from_numpy(target),
            "valid": torch.from_numpy(valid),
        }


def _to_datetime(value: np.datetime64) -> datetime:
    seconds = int(value.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None)


def _steps(times: np.ndarray, hours: int, where: Path) -> int:
    if len(times) < 2:
        return max(1, hours)
    dt = (times[1] - times[0]) / np.timedelta64(1, "h")
    if dt <= 0 or hours % dt:
        raise EofmError(f"{hours} h is not a multiple of the {dt:g} h time step of {where}.")
    return int(hours // dt)


class AuroraBatches:
    """Aurora batches from samples of one source: its statics, grid and levels; and the
    check that the inputs at given time steps are finite (Aurora takes no missing values)."""

    def __init__(self, source: ERA5Source) -> None:
        self.source = source
        rows = len(source.lat) - len(source.lat) % source.spec.patch_size
        self.lat = torch.from_numpy(source.lat[:rows].astype(np.float32))
        self.lon = torch.from_numpy(source.lon.astype(np.float32))
        self.statics: dict[str, torch.Tensor] = {}
        for name in source.spec.static_vars:
            if ("static", name) in source.fields:
                self.statics[name] = torch.from_numpy(source.read("static", name, None)[:rows])
            else:
                self.statics[name] = torch.full(
                    (rows, len(source.lon)), source.filled_statics[name]
                )

    def check_finite(self, steps: Sequence[int]) -> None:
        src = self.source
        for kind, names in (("surf", src.surf_names()), ("atmos", src.atmos_names())):
            for name in names:
                for t in steps:
                    if not np.isfinite(src.read(kind, name, t)).all():
                        f = src.fields[(kind, name)]
                        raise EofmError(
                            f"Input variable {name} in {f.path} has NaN/inf values at "
                            f"{np.datetime_as_string(src.times[t], unit='h')}; Aurora cannot "
                            "take missing values."
                        )
        for name, values in self.statics.items():
            if not torch.isfinite(values).all():
                raise EofmError(
                    f"Static variable {name} in {src.fields[('static', name)].path} has NaN."
                )

    def collate(self, samples: list[dict]) -> Any:
        """An ``aurora.Batch`` of samples (``surf``, ``atmos`` and ``time`` of each)."""
        from aurora import Batch, Metadata

        return Batch(
            surf_vars={k: torch.stack([s["surf"][k] for s in samples]) for k in samples[0]["surf"]},
            static_vars=dict(self.statics),
            atmos_vars={
                k: torch.stack([s["atmos"][k] for s in samples]) for k in samples[0]["atmos"]
            },
            metadata=Metadata(
                lat=self.lat,
                lon=self.lon,
                time=tuple(s["time"] for s in samples),
                atmos_levels=tuple(self.source.levels),
            ),
        )


class ERA5DataModule(SplitLoaders, L.LightningDataModule):
    """Chronological splits, target statistics and Aurora-batch loaders for ERA5."""

    def __init__(
        self,
        root: str | Path,
        spec: WeatherSpec,
        *,
        layout: str = "auto",
        split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.source = open_source(root, spec, layout=layout)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        src = self.source
        self.batches = AuroraBatches(src)
        self.statics = self.batches.statics
        land = None
        if spec.land_only:
            if "lsm" not in self.statics or "lsm" in src.filled_statics:
                raise EofmError(
                    f"task.land_only lists {list(spec.land_only)}, but {root} has no land-sea "
                    "mask (lsm) to tell land from sea."
                )
            land = self.statics["lsm"].numpy() > 0.5
        probe = ERA5Dataset(src, [], [0.0] * len(spec.targets), [1.0] * len(spec.targets), land)
        first = (spec.history_steps - 1) * probe.step
        now = list(range(first, len(src.times) - probe.lead))
        if not now:
            raise EofmError(
                f"{root} has {len(src.times)} time steps: too few for {spec.history_steps} "
                f"history steps {spec.step_hours} h apart and a {spec.lead_hours} h lead."
            )
        self.splits = chronological_splits(now, split_fractions, root)
        self._check_finite(probe)
        if target_mean is None or target_std is None:
            target_mean, target_std = self._target_statistics(probe)
        self.mean, self.std = [float(v) for v in target_mean], [float(v) for v in target_std]
        self.land = land
        self.lat, self.lon = self.batches.lat, self.batches.lon
        log.info(
            "ERA5 %s: %d levels, %s; inputs %s + %s, targets %s",
            root,
            len(src.levels),
            ", ".join(f"{s} {len(v)} samples" for s, v in self.splits.items()),
            src.surf_names(),
            src.atmos_names(),
            list(spec.targets),
        )

    def _check_finite(self, probe: ERA5Dataset) -> None:
        needed = {t for split in self.splits.values() for i in split for t in probe.history(i)}
        self.batches.check_finite(sorted(needed))

    def _target_statistics(self, probe: ERA5Dataset) -> tuple[list[float], list[float]]:
        src = self.source
        means, stds = [], []
        for name in src.spec.targets:
            values = np.stack([probe.target_field(name, i) for i in self.splits["train"]])
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                raise EofmError(
                    f"Target {name} has no finite value in the training split.{_why(name, src)}"
                )
            std = float(finite.std())
            means.append(float(finite.mean()))
            stds.append(std if std > 0 else 1.0)
        return means, stds

    def dataset(self, split: str) -> ERA5Dataset:
        return ERA5Dataset(self.source, self.splits[split], self.mean, self.std, self.land)

    def fingerprint(self, split: str) -> dict[str, Any]:
        """What the samples of ``split`` depend on (for the latent cache key)."""
        spec = self.spec
        return {
            "files": [str(p.resolve()) for p in self.source.files],
            "split": split,
            "times": [str(self.source.times[i]) for i in self.splits[split]],
            "levels": list(self.source.levels),
            "inputs": [self.source.surf_names(), self.source.atmos_names(), list(self.statics)],
            "filled_statics": self.source.filled_statics,
            "history": [spec.history_steps, spec.step_hours],
            "targets": [[t, spec.accumulates(t)] for t in spec.targets],
            "lead_hours": spec.lead_hours,
            "target_statistics": [self.mean, self.std],
            "grid": [self.lat.tolist()[:1], self.lat.tolist()[-1:], len(self.lon)],
        }

    def augmentations(self) -> list[str]:
        return []  # samples are deterministic

    def collate(self, samples: list[dict]) -> dict:
        return {
            "inputs": self.batches.collate(samples),
            "target": torch.stack([s["target"] for s in samples]),
            "valid": torch.stack([s["valid"] for s in samples]),
            "time": [s["time"].isoformat() for s in samples],
        }


def read_climatology(
    path: Path,
    names: Sequence[str],
    *,
    lat_range: Sequence[float] | None,
    lon_range: Sequence[float] | None,
    flip_latitude: bool,
    shape: tuple[int, int],
) -> np.ndarray:
    """Climatology of ``names`` on the data grid, ``(V, H, W)``; averaged over time if timed."""
    spec = WeatherSpec([], [], [], [], lat_range=lat_range, lon_range=lon_range)
    spec.flip_latitude = flip_latitude
    found: dict[str, Any] = {}
    for file in _dataset_files(path, "auto"):
        ds = open_standardised(file, spec)
        for var, array in ds.data_vars.items():
            found.setdefault(ERA5_NAMES.get(str(var), str(var)), array)
    rows, cols = shape
    maps = []
    for name in names:
        if name not in found:
            raise EofmError(f"Climatology {path} has no variable '{name}'.")
        array = found[name].mean("time") if "time" in found[name].dims else found[name]
        values = np.asarray(array.values, dtype=np.float32)
        if values.ndim != 2 or values.shape[0] < rows or values.shape[1] != cols:
            raise EofmError(f"Climatology {path}: {name} is {values.shape}, the grid is {shape}.")
        maps.append(values[:rows])
    return np.stack(maps)


def _why(target: str, source: ERA5Source) -> str:
    """Why a derived target may have no value: the fire-weather indices' start-up."""
    if target not in FIRE_TARGETS:
        return ""
    days = np.unique(source.times.astype("datetime64[D]"))
    return (
        f" Fire-weather indices start on the first day with 24 h of precipitation before "
        f"its local noon, and a fire season after 3 days at or above 6 degC (GFWED); "
        f"{source.root} holds {len(days)} day(s) ({days[0]} .. {days[-1]}), and the training "
        "split its first fraction of them: give more days, or a larger data.split_fractions[0]."
    )


def chronological_splits(
    now: list[int], fractions: Sequence[float], root: Path
) -> dict[str, list[int]]:
    n = len(now)
    counts = [int(round(f * n)) for f in fractions[:2]]
    counts = [max(1, c) for c in counts]
    train_end = counts[0]
    val_end = min(n - 1, train_end + counts[1])
    splits = {"train": now[:train_end], "val": now[train_end:val_end], "test": now[val_end:]}
    empty = [s for s, v in splits.items() if not v]
    if empty:
        raise EofmError(f"{root} yields {n} samples: too few for non-empty {empty} split(s).")
    return splits

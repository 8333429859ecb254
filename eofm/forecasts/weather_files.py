"""``eofm predict`` for weather runs: a trained run over ERA5-layout data, written as one
CF-compliant NetCDF (or zarr) file, a batch of time steps at a time.

The file has the coordinates ``time`` (the target times: 'now' plus the lead), ``lat``
and ``lon``; one float32 variable per target with its units, long name and, for
accumulated targets, a ``cell_methods`` naming the window; global attributes with the
model's repo@revision and eofm's version. Chunks are one time step of the whole grid
(capped at 1024 x 1024 cells), the unit of reading a map. It is written under a
temporary name and renamed when complete; memory holds one batch of steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eofm.atomic import atomic_output, remove_stale_partials
from eofm.errors import EofmError

FORMATS = ("netcdf", "zarr")
SUFFIXES = {"netcdf": ".nc", "zarr": ".zarr"}


def parse_time(text: str, option: str) -> np.datetime64:
    try:
        return np.datetime64(text, "m")
    except ValueError:
        raise EofmError(
            f"{option} must be a date or time like 2020-01-01T06:00, got {text!r}.", exit_code=2
        ) from None


def forecast_steps(run: Any, start: str | None, end: str | None) -> list[int]:
    """The run's 'now' steps whose target time lies in ``[start, end]`` (all by default)."""
    steps = run.usable_steps()
    if not steps:
        raise EofmError(f"{run.source.root} holds too few time steps for this run's history.")
    times = np.array([run.target_time(i) for i in steps], dtype="datetime64[m]")
    low = parse_time(start, "--start") if start else times[0]
    high = parse_time(end, "--end") if end else times[-1]
    chosen = [i for i, t in zip(steps, times, strict=True) if low <= t <= high]
    if not chosen:
        raise EofmError(
            f"The time range {low} .. {high} is outside the data: {run.source.root} gives this "
            f"run target times {times[0]} .. {times[-1]}.",
            exit_code=2,
        )
    return chosen


def check_grid(run: Any, manifest: dict, where: Any) -> None:
    """The data's grid and variables must be the run's (a clear error otherwise)."""
    grid = manifest.get("grid")
    lat, lon = run.grid()
    if grid is not None:
        want_lat, want_lon = np.asarray(grid["lat"]), np.asarray(grid["lon"])
        same = (
            want_lat.shape == lat.shape
            and want_lon.shape == lon.shape
            and np.allclose(want_lat, lat, atol=1e-4)
            and np.allclose(want_lon, lon, atol=1e-4)
        )
        if not same:
            raise EofmError(
                f"The grid of {where} ({len(lat)} x {len(lon)}, lat {lat[0]:g} .. {lat[-1]:g}, "
                f"lon {lon[0]:g} .. {lon[-1]:g}) is not the run's ({len(want_lat)} x "
                f"{len(want_lon)}, lat {want_lat[0]:g} .. {want_lat[-1]:g}, lon "
                f"{want_lon[0]:g} .. {want_lon[-1]:g}); select it with data.lat_range / "
                "data.lon_range, as in training.",
                exit_code=2,
            )
    inputs = manifest.get("inputs") or {}
    source = run.source
    for key, held in (("surf_vars", source.surf_names()), ("atmos_vars", source.atmos_names())):
        missing = [v for v in inputs.get(key, []) if v not in held]
        if missing:
            raise EofmError(
                f"{where} lacks the run's input variable(s) {missing} ({key}).", exit_code=2
            )


def written_by_eofm(path: Path) -> bool:
    """Whether the folder ``path`` is a zarr store that ``eofm predict`` wrote (its
    attributes name eofm's version): the only folder ``--overwrite`` replaces."""
    for name in ("zarr.json", ".zattrs"):
        meta = path / name
        if meta.is_file() and '"eofm_version"' in meta.read_text(errors="replace"):
            return True
    return False


def _attrs(trained: Any, run: Any) -> dict[str, Any]:
    from eofm import __version__
    from eofm.publishing.provenance import backbone_source, is_random_init, output_attributes

    base = trained.manifest.get("backbone") or {}
    timing = trained.manifest.get("timing") or {}
    model = trained.manifest.get("published_as") or trained.recipe.name
    return {
        "Conventions": "CF-1.8",
        "title": f"eofm predictions of {', '.join(run.names)}",
        "source": f"eofm {__version__}, model {model}, backbone {backbone_source(trained.manifest)}",
        "model": str(model),
        "backbone_repo": str(base.get("repo")),
        "backbone_revision": "none"
        if is_random_init(trained.manifest)
        else str(base.get("revision")),
        "eofm_version": __version__,
        "lead_hours": int(timing.get("lead_hours", 0)),
        "history": "eofm predict",
        **output_attributes(trained.manifest),
    }


def write_forecasts(trained: Any, run: Any, steps: Sequence[int], target: Path, fmt: str) -> Path:
    """Predict ``steps`` and write them to ``target`` (``.nc`` or ``.zarr``), atomically."""
    if fmt not in FORMATS:
        raise EofmError(f"--format must be netcdf or zarr, got {fmt!r}.", exit_code=2)
    lat, lon = run.grid()
    described = trained.manifest.get("targets") or {}
    attrs = _attrs(trained, run)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target.parent)
    try:
        with atomic_output(target, written_by_eofm if fmt == "zarr" else None) as tmp:
            _write_steps(run, steps, tmp, fmt, lat, lon, described, attrs)
    except (OSError, RuntimeError) as exc:  # a full disk: netCDF4 says "NetCDF: HDF error"
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise EofmError(
            f"Cannot write {target}: {reason}. Nothing partial was left behind."
        ) from None
    return target


def _write_steps(run, steps, tmp, fmt, lat, lon, described, attrs) -> None:
    writer = _NetCDF(tmp, run.names, lat, lon, described, attrs) if fmt == "netcdf" else None
    try:
        for index, (now, fields) in enumerate(run.outputs(list(steps))):
            time = np.datetime64(run.target_time(now), "m")
            if writer is not None:
                writer.append(time, fields)
            else:
                _append_zarr(tmp, time, fields, run.names, lat, lon, described, attrs, index == 0)
    finally:
        if writer is not None:
            writer.close()


LAT_ATTRS = {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}
LON_ATTRS = {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}
#: The epoch of the time coordinate.
EPOCH = np.datetime64("1900-01-01T00:00", "m")


def _variable_attrs(name: str, described: dict, lead_hours: int) -> dict[str, Any]:
    attrs = dict(described.get(name) or {"units": "1", "long_name": name})
    window = attrs.pop("accumulated_hours", None)
    if window:
        attrs["cell_methods"] = f"time: sum (accumulated over the {window} h before)"
    return attrs


class _NetCDF:
    """A NetCDF4 file appended one time step at a time (unlimited ``time``)."""

    def __init__(self, path, names, lat, lon, described, attrs) -> None:
        import netCDF4

        self.ds = netCDF4.Dataset(path, "w", format="NETCDF4")
        ds = self.ds
        ds.setncatts(attrs)
        ds.createDimension("time", None)
        ds.createDimension("lat", len(lat))
        ds.createDimension("lon", len(lon))
        time = ds.createVariable("time", "f8", ("time",))
        time.setncatts(
            {
                "units": "hours since 1900-01-01 00:00:00",
                "calendar": "standard",
                "standard_name": "time",
                "long_name": "valid time of the prediction",
                "axis": "T",
            }
        )
        for name, values, extra in (("lat", lat, LAT_ATTRS), ("lon", lon, LON_ATTRS)):
            variable = ds.createVariable(name, "f8", (name,))
            variable.setncatts(extra)
            variable[:] = np.asarray(values, np.float64)
        chunks = (1, min(len(lat), 1024), min(len(lon), 1024))
        self.variables = []
        for name in names:
            variable = ds.createVariable(
                name,
                "f4",
                ("time", "lat", "lon"),
                zlib=True,
                complevel=4,
                chunksizes=chunks,
                fill_value=np.float32(np.nan),
            )
            variable.setncatts(_variable_attrs(name, described, attrs["lead_hours"]))
            self.variables.append(variable)
        self.index = 0

    def append(self, time: np.datetime64, fields: np.ndarray) -> None:
        hours = (time - EPOCH) / np.timedelta64(1, "h")
        self.ds["time"][self.index] = hours
        for variable, values in zip(self.variables, fields, strict=True):
            variable[self.index, :, :] = values.astype(np.float32)
        self.index += 1

    def close(self) -> None:
        self.ds.close()


def _append_zarr(path, time, fields, names, lat, lon, described, attrs, first) -> None:
    import xarray as xr

    data = {
        name: (("time", "lat", "lon"), values[None].astype(np.float32))
        for name, values in zip(names, fields, strict=True)
    }
    ds = xr.Dataset(
        data,
        coords={
            "time": [time.astype("datetime64[ns]")],
            "lat": ("lat", np.asarray(lat, np.float64), LAT_ATTRS),
            "lon": ("lon", np.asarray(lon, np.float64), LON_ATTRS),
        },
        attrs=attrs,
    )
    for name in names:
        ds[name].attrs = _variable_attrs(name, described, attrs["lead_hours"])
    ds["time"].attrs = {
        "standard_name": "time",
        "axis": "T",
        "long_name": "valid time of the prediction",
    }
    if first:
        chunks = (1, min(len(lat), 1024), min(len(lon), 1024))
        encoding = {name: {"chunks": chunks} for name in names}
        encoding["time"] = {"units": "hours since 1900-01-01 00:00:00", "calendar": "standard"}
        ds.to_zarr(path, mode="w", encoding=encoding, consolidated=True)
    else:
        ds.to_zarr(path, append_dim="time", consolidated=True)

"""ERA5 and Aurora helpers for the weather tests.

The real ERA5 sample (../shared/data/era5) has q, u, v on 20 levels and d2m, e, sp,
tcw, tp, u10, v10. Tests that need more generate it here, in ERA5's own NetCDF layout
(short names, time/latitude/longitude coordinates): ``t2m`` and ``lsm`` in
:func:`with_generated_variables`. Everything else the tests read is real.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import xarray as xr

ERA5 = Path(__file__).resolve().parents[2] / "shared" / "data" / "era5"

#: A tiny Aurora: the AuroraSmallPretrained class at embed 32 with one block per stage.
TINY_AURORA = {
    "embed_dim": 32,
    "num_heads": 2,
    "encoder_depths": [1, 1, 1],
    "encoder_num_heads": [1, 2, 4],
    "decoder_depths": [1, 1, 1],
    "decoder_num_heads": [4, 2, 1],
}


def copy_era5(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in ERA5.glob("*.nc"):
        shutil.copy(f, dst / f.name)
    return dst


def rewrite(path: Path, change) -> None:
    """Load a NetCDF fully, apply ``change(ds) -> ds`` and write it back in place."""
    with xr.open_dataset(path) as ds:
        ds = change(ds.load())
    ds.to_netcdf(path)


def with_generated_variables(dst: Path) -> Path:
    """The real sample plus generated ``t2m`` (from d2m + 3 K) and ``lsm`` (west half land)."""
    copy_era5(dst)
    with xr.open_dataset(ERA5 / "ERA5_2020-01-01_d2m.nc") as ds:
        t2m = (ds["d2m"] + 3.0).rename("t2m").load()
        t2m.attrs = {"units": "K", "long_name": "2 metre temperature"}
        xr.Dataset({"t2m": t2m}).to_netcdf(dst / "ERA5_2020-01-01_t2m.nc")
        lat, lon = ds["latitude"], ds["longitude"]
        land = (
            (lon < 5.0)
            .astype("float64")
            .broadcast_like(lat * lon)
            .transpose("latitude", "longitude")
        )
        xr.Dataset({"lsm": land.rename("lsm")}).to_netcdf(dst / "ERA5_static_lsm.nc")
    return dst


def tiny_aurora(seed: int = 0):
    from aurora import AuroraSmallPretrained

    torch.manual_seed(seed)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_AURORA.items()}
    return AuroraSmallPretrained(**kwargs)


def official_aurora_state(model: torch.nn.Module, patch: int = 4) -> dict[str, torch.Tensor]:
    """The released checkpoints' layout: ``net.`` prefix, ID-based embeddings and heads."""
    state = dict(model.state_dict())
    surf, atmos = ("2t", "10u", "10v", "msl", "lsm", "z", "slt"), ("z", "u", "v", "t", "q")
    embeds = [state.pop(f"encoder.surf_token_embeds.weights.{n}") for n in surf]
    state["encoder.surf_token_embeds.weight"] = torch.cat(embeds, dim=1)
    embeds = [state.pop(f"encoder.atmos_token_embeds.weights.{n}") for n in atmos]
    state["encoder.atmos_token_embeds.weight"] = torch.cat(embeds, dim=1)
    for kind, names in (("surf", surf[:4]), ("atmos", atmos)):
        w = [state.pop(f"decoder.{kind}_heads.{n}.weight") for n in names]
        b = [state.pop(f"decoder.{kind}_heads.{n}.bias") for n in names]
        state[f"decoder.{kind}_head.weight"] = torch.stack(w, 1).reshape(len(names) * patch**2, -1)
        state[f"decoder.{kind}_head.bias"] = torch.stack(b, 1).reshape(-1)
    return {f"net.{k}": v for k, v in state.items()}


def ckpt_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def aurora_config_bytes() -> bytes:
    return json.dumps(
        {"aurora": {"class": "AuroraSmallPretrained", "kwargs": TINY_AURORA}}
    ).encode()


def regression_recipe(root: Path, run_name: str = "era5", **sections) -> dict:
    recipe = {
        "name": run_name,
        "seed": 0,
        "task": {"definition": "hydrology", "targets": ["tp", "e"]},
        "backbone": {"name": "hf://tester/aurora-tiny", "pretrained": True},
        "adapter": {"mode": "frozen"},
        "decoder": {"name": "mlp_latent", "channels": 16},
        "data": {
            "name": "era5",
            "root": str(root),
            "lon_range": [0.0, 9.75],
            "lat_range": [55.0, 51.25],
            "allow_missing": ["2t", "msl", "z", "t", "lsm", "slt"],
            "levels": [300, 500, 850],
            "batch_size": 2,
        },
        "trainer": {"max_epochs": 2, "enable_progress_bar": False, "log_every_n_steps": 1},
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    return recipe


def to_weatherbench_zarr(src: Path, dst: Path) -> Path:
    """The real sample as a WeatherBench2-style zarr: long names, ascending latitude."""
    short_to_long = {
        "u10": "10m_u_component_of_wind",
        "v10": "10m_v_component_of_wind",
        "q": "specific_humidity",
        "u": "u_component_of_wind",
        "v": "v_component_of_wind",
        "tp": "total_precipitation",
        "e": "evaporation",
    }
    arrays = {}
    for f in sorted(src.glob("*.nc")):
        with xr.open_dataset(f) as ds:
            for var in ds.data_vars:
                if var in short_to_long:
                    arrays[short_to_long[var]] = ds[var].load().astype("float32")
    ds = xr.Dataset(arrays).sortby("latitude")  # WeatherBench2 stores latitude ascending
    ds.to_zarr(dst, mode="w", consolidated=False)
    return dst


def nan_in(path: Path, var: str, step: int) -> None:
    def change(ds):
        values = ds[var].values.copy()
        values[step, ..., 3, 3] = np.nan
        ds[var].values = values
        return ds

    rewrite(path, change)


def fire_season_era5(dst: Path, days: int = 10) -> Path:
    """ERA5 of ``days`` warm days, 6-hourly, in the sample's own NetCDF layout.

    Each day is the real sample's 00/06/12/18 UTC steps (its u, v, q on levels, d2m, tp,
    u10, v10, sp, tcw, e), shifted by whole days, with a little noise so days differ. The
    sample has no 2 m temperature; ``t2m`` is generated 25 K above the dew point (a warm,
    dry spell, so that a fire season starts and the indices are defined).
    """
    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for src in ERA5.glob("*.nc"):
        with xr.open_dataset(src) as ds:
            ds = ds.load()
        six = ds.isel(time=[0, 6, 12, 18])
        parts = []
        for d in range(days):
            part = six.assign_coords(time=six["time"] + np.timedelta64(d, "D"))
            for name in part.data_vars:
                values = part[name].values
                part[name].values = values * (1 + 0.05 * rng.standard_normal(values.shape))
            parts.append(part)
        xr.concat(parts, "time").to_netcdf(dst / src.name)
    with xr.open_dataset(dst / "ERA5_2020-01-01_d2m.nc") as ds:
        t2m = (ds["d2m"] + 25.0).rename("t2m").load()
    t2m.attrs = {"units": "K", "long_name": "2 metre temperature"}
    xr.Dataset({"t2m": t2m}).to_netcdf(dst / "ERA5_2020-01-01_t2m.nc")
    return dst


def model_level_era5(dst: Path, levels: list[int] | None = None) -> Path:
    """The real sample with its u, v, q on ERA5 model levels, in the CDS layout.

    The layout is that of the CDS's model-level NetCDF (``reanalysis-era5-complete``,
    ``levtype=ml``, converted by ``grib_to_netcdf``) as WAM2layers downloads it:
    ``ERA5_<date>_ml_<var>.nc``, variable ``<var>`` packed as int16 with scale/offset,
    dims ``(time, level, latitude, longitude)``, ``level`` int32 L137 level numbers with
    ``long_name: model_level_number``. The values are the real pressure-level fields
    interpolated in log-pressure to each column's model-level pressures (from the real
    ``sp`` and ECMWF's L137 a/b), held constant beyond 100 and 1000 hPa. The pressure-level
    files are removed; the surface files stay.
    """
    from eofm.data.model_levels import full_level_pressure

    levels = levels or list(range(60, 138))
    copy_era5(dst)
    with xr.open_dataset(ERA5 / "ERA5_2020-01-01_sp.nc") as ds:
        sp = ds["sp"].values.astype(np.float64)
    pressure = full_level_pressure(np.array(levels), sp)  # (T, K, H, W) Pa
    for var in ("q", "u", "v"):
        (dst / f"ERA5_2020-01-01_pl_{var}.nc").unlink()
        with xr.open_dataset(ERA5 / f"ERA5_2020-01-01_pl_{var}.nc") as ds:
            pl = ds[var].load()
            attrs, global_attrs = dict(pl.attrs), dict(ds.attrs)
        log_pl = np.log(pl["level"].values.astype(np.float64) * 100.0)  # ascending
        values = pl.values
        out = np.empty(pressure.shape)
        for k in range(len(levels)):
            lp = np.clip(np.log(pressure[:, k]), log_pl[0], log_pl[-1])
            upper = np.clip(np.searchsorted(log_pl, lp.ravel()) - 1, 0, len(log_pl) - 2)
            upper = upper.reshape(lp.shape)
            w = (lp - log_pl[upper]) / (log_pl[upper + 1] - log_pl[upper])
            v0 = np.take_along_axis(values, upper[:, None], axis=1)[:, 0]
            v1 = np.take_along_axis(values, upper[:, None] + 1, axis=1)[:, 0]
            out[:, k] = v0 + w * (v1 - v0)
        level = xr.DataArray(
            np.array(levels, dtype=np.int32),
            dims="level",
            attrs={"long_name": "model_level_number"},
        )
        array = xr.DataArray(
            out,
            dims=("time", "level", "latitude", "longitude"),
            coords={
                "time": pl["time"],
                "level": level,
                "latitude": pl["latitude"],
                "longitude": pl["longitude"],
            },
            attrs=attrs,
        )
        scale = (out.max() - out.min()) / 65530.0
        encoding = {
            var: {
                "dtype": "int16",
                "scale_factor": scale,
                "add_offset": (out.max() + out.min()) / 2,
                "_FillValue": np.int16(-32767),
            }
        }
        xr.Dataset({var: array}, attrs=global_attrs).to_netcdf(
            dst / f"ERA5_2020-01-01_ml_{var}.nc", encoding=encoding
        )
    return dst


def hourly_daily_files_era5(dst: Path, days: int = 10) -> Path:
    """``days`` days of hourly ERA5 in daily files, as the CDS is most often asked for them:
    ``ERA5_2020-01-DD_<var>.nc``, each the real sample's 24 hourly steps (its own layout,
    int16 packing included) with the time shifted to day DD. The sample has no 2 m
    temperature: ``t2m`` is its ``d2m`` + 25 K (a warm, dry spell, so a fire season starts).
    """
    dst.mkdir(parents=True, exist_ok=True)
    for src in ERA5.glob("ERA5_2020-01-01_*.nc"):
        var = src.stem.split("_", 2)[2]
        with xr.open_dataset(src) as ds:
            ds = ds.load()
        encoding = {
            name: {
                k: ds[name].encoding[k]
                for k in ("dtype", "scale_factor", "add_offset", "_FillValue")
                if k in ds[name].encoding
            }
            for name in ds.data_vars
        }
        if var == "d2m":
            t2m = (ds["d2m"] + 25.0).rename("t2m")
            t2m.attrs = {"units": "K", "long_name": "2 metre temperature"}
        for d in range(days):
            day = ds.assign_coords(time=ds["time"] + np.timedelta64(d, "D"))
            day.to_netcdf(dst / f"ERA5_2020-01-{d + 1:02d}_{var}.nc", encoding=encoding)
            if var == "d2m":
                t2m.assign_coords(time=day["time"]).to_dataset().to_netcdf(
                    dst / f"ERA5_2020-01-{d + 1:02d}_t2m.nc"
                )
    return dst

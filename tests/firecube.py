"""Datacubes in the Mesogeos layout, generated for tests (the real cube is 1.4 TB).

As ``mesogeos_cube.zarr``: dims ``(time, y, x)``, daily, EPSG:4326 coordinates ``x``
(longitude) and ``y`` (latitude, decreasing) at about 1 km; the dynamic variables and the
static ``(y, x)`` variables by their Mesogeos names; targets ``ignition_points`` (burned
hectares of the fires started that day, else 0) and ``burned_areas`` (0/1).

The planted signal: a fire starts on day t+1 where the previous days were hot and dry
(high t2m, low rh) and the place is populated and forested, with a little noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from eofm.data.firecube_config import MESOGEOS_DYNAMIC, MESOGEOS_STATIC


def make_cube(
    path: Path,
    *,
    years: tuple[int, ...] = (2019, 2020, 2021),
    days_per_year: int = 40,
    size: int = 12,
    seed: int = 0,
    drop: tuple[str, ...] = (),
    static_size: int | None = None,
    start: str | None = None,
    origin: tuple[float, float] = (38.0, 22.0),
) -> Path:
    """A cube of ``days_per_year`` days in each of ``years`` from 1 July (or, with
    ``start``, that many consecutive days from it), its north-west cell at ``origin``."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    firsts = [pd.Timestamp(start)] if start else [pd.Timestamp(f"{y}-07-01") for y in years]
    times = pd.DatetimeIndex(
        [first + pd.Timedelta(days=d) for first in firsts for d in range(days_per_year)]
    )
    t = len(times)
    y = np.round(origin[0] - np.arange(size) * 0.009, 4)
    x = np.round(origin[1] + np.arange(size) * 0.009, 4)
    dyn = {v: rng.normal(0, 1, (t, size, size)).astype(np.float32) for v in MESOGEOS_DYNAMIC}
    dyn["t2m"] = (300 + 5 * rng.normal(0, 1, (t, size, size))).astype(np.float32)
    dyn["rh"] = np.clip(50 + 15 * rng.normal(0, 1, (t, size, size)), 1, 100).astype(np.float32)
    stat = {v: rng.uniform(0, 1, (size, size)).astype(np.float32) for v in MESOGEOS_STATIC}
    # danger on day t+1 from the 3 days up to t: hot, dry, populated, forested
    heat = (dyn["t2m"] - 300) / 5 - (dyn["rh"] - 50) / 15
    recent = np.zeros_like(heat)
    for k in range(3):
        recent[3:] += heat[3 - 1 - k : t - 1 - k]
    place = 2 * stat["population"] + 2 * stat["lc_forest"]
    danger = recent / 3 + place + rng.normal(0, 0.3, heat.shape)
    ignition = (danger > np.quantile(danger, 0.985)) & (np.arange(t) >= 3)[:, None, None]
    hectares = np.where(ignition, rng.uniform(1, 200, ignition.shape), 0.0).astype(np.float32)
    data = {}
    for name, arr in dyn.items():
        data[name] = (("time", "y", "x"), arr)
    for name, arr in stat.items():
        if static_size:  # statics on another grid: a broken cube
            data[name] = (("y_static", "x_static"), arr[:static_size, :static_size])
        else:
            data[name] = (("y", "x"), arr)
    data["ignition_points"] = (("time", "y", "x"), hectares)
    data["burned_areas"] = (("time", "y", "x"), (hectares > 0).astype(np.float32))
    for name in drop:
        data.pop(name)
    ds = xr.Dataset(data, coords={"time": times, "y": y, "x": x})
    ds.attrs["crs"] = "EPSG:4326"
    ds.to_zarr(path, mode="w")
    return path


# --- the real Mesogeos layout -------------------------------------------------------------

#: ERA5-Land layers of the cube (NaN over the sea), MODIS layers, and the rest.
ERA5_LAND = ["d2m", "rh", "sp", "ssrd", "t2m", "tp", "wind_speed", "wind_direction"]
MODIS = {"lst_day": 1, "lst_night": 1, "ndvi": 16, "lai": 8}  # days a value repeats
REAL_STATIC = ["dem", "slope", "aspect", "curvature", "roads_distance"]
ANNUAL = ["population", "lc_agriculture", "lc_forest", "lc_grassland", "lc_settlement",
          "lc_shrubland", "lc_sparse_vegetation", "lc_water_bodies", "lc_wetland"]  # fmt: skip
WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'
)


def _periods(times: pd.DatetimeIndex, days: int | str) -> np.ndarray:
    """An id per day of the composite period it falls in: MODIS 16-/8-day periods restart
    on 1 January; ``"dekad"``: days 1-10, 11-20 and 21-end of each month (EDO's SMI)."""
    if days == "dekad":
        return (times.year * 12 + times.month) * 3 + np.minimum((times.day - 1) // 10, 2)
    return times.year * 100 + (times.day_of_year - 1) // int(days)


def _repeat_over(periods: np.ndarray, rng: np.random.Generator, shape, scale=1.0) -> np.ndarray:
    _, inverse = np.unique(periods, return_inverse=True)
    values = rng.normal(0, scale, (inverse.max() + 1, *shape)).astype(np.float32)
    return values[inverse]


def make_mesogeos_cube(
    path: Path,
    *,
    start: str = "2019-04-01",
    days: int = 913,
    size: int = 24,
    seed: int = 0,
    drop: tuple[str, ...] = (),
    annual_all_nan: bool = False,
    rename: dict[str, str] | None = None,
    origin: tuple[float, float] = (38.0, 22.0),
) -> Path:
    """A cube in the layout of the Mesogeos release (``mesogeos_cube.zarr``), small.

    Facts copied from Orion-AI-Lab/mesogeos (``datacube_creation/src/cube.py``,
    ``notebooks/1_Exploring_Mesogeos.ipynb``): zarr (format 2), dims ``(time, y, x)``,
    ``x`` ascending longitude and ``y`` descending latitude at 0.01 degree, a
    ``spatial_ref`` int64 variable (rioxarray's CRS record), float32 layers chunked one day
    per chunk ``(1, H, W)`` (statics ``(H, W)``); only dem, slope, aspect, curvature and
    roads_distance are ``(y, x)``; ``population`` and the ``lc_*`` fractions are
    ``(time, y, x)`` with values on 1 January of each year and on the cube's first day,
    NaN on every other day; ndvi repeats over 16-day periods, lai over 8 days, smi over
    dekads; LST has cloud gaps (NaN); the ERA5-Land layers are NaN over the sea (here the south-west corner); ``rh``
    is a fraction (%/100); ``ignition_points[t]`` holds the hectares of fires that ignite
    on day t+1 (the release shifts each fire one day back, ``sample_positives.ipynb``) and
    ``burned_areas[t]`` their final perimeters (1 inside).

    The planted signal: a fire ignites on t+1 where days t-2..t were hot and dry and the
    cell is forested and populated.
    """
    import xarray as xr

    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=days, freq="D")
    t, shape = len(times), (size, size)
    yy, xx = np.mgrid[0:size, 0:size]
    sea = (yy + (size - 1 - xx)) > int(1.4 * size)  # the south-west corner
    y = np.round(origin[0] - np.arange(size) * 0.01, 4)
    x = np.round(origin[1] + np.arange(size) * 0.01, 4)
    season = np.cos(2 * np.pi * (times.day_of_year.values - 200) / 365.25)[:, None, None]
    data: dict[str, np.ndarray] = {}
    data["t2m"] = 290 + 8 * season + 3 * rng.normal(0, 1, (t, *shape))
    data["d2m"] = data["t2m"] - 8 - 2 * rng.uniform(0, 1, (t, *shape))
    data["rh"] = np.clip(0.55 - 0.15 * season + 0.15 * rng.normal(0, 1, (t, *shape)), 0.02, 1)
    data["sp"] = 100000 + 300 * rng.normal(0, 1, (t, *shape))
    data["ssrd"] = 2e7 + 5e6 * season + 1e6 * rng.normal(0, 1, (t, *shape))
    data["tp"] = np.maximum(0, 0.002 * rng.normal(0, 1, (t, *shape)))
    data["wind_speed"] = np.abs(3 + rng.normal(0, 1.5, (t, *shape)))
    data["wind_direction"] = rng.uniform(0, 360, (t, *shape))
    for name, period in MODIS.items():
        data[name] = _repeat_over(_periods(times, period), rng, shape)
    data["lst_day"] += 300 + 10 * season
    data["lst_night"] += 285 + 8 * season
    data["lai"] = np.abs(data["lai"])
    data["ndvi"] = np.clip(0.4 + 0.1 * data["ndvi"], -1, 1)
    data["smi"] = np.clip(0.5 + 0.1 * _repeat_over(_periods(times, "dekad"), rng, shape), 0, 1)
    for name in ("lst_day", "lst_night"):  # MODIS LST has cloud gaps
        data[name][rng.uniform(0, 1, data[name].shape) < 0.1] = np.nan
    for name in data:
        data[name][:, sea] = np.nan
    static = {
        "dem": rng.uniform(0, 1500, shape),
        "slope": rng.uniform(0, 0.5, shape),
        "aspect": rng.uniform(0, 360, shape),
        "curvature": rng.normal(0, 1, shape),
        "roads_distance": rng.uniform(0, 20, shape),
    }
    for v in static.values():
        v[sea] = np.nan
    jan1 = np.flatnonzero((times.day_of_year == 1) | (np.arange(t) == 0))
    cover = rng.dirichlet(np.ones(8), (len(jan1), *shape)).astype(np.float32)  # (K, H, W, 8)
    cover[:, :, :, 1] += 0.3 * (xx > size // 3)  # forest in the east
    cover /= cover.sum(-1, keepdims=True)
    population = rng.uniform(0, 300, (len(jan1), *shape))
    annual = {"population": population}
    annual |= {name: cover[..., k] for k, name in enumerate(ANNUAL[1:])}
    for name, values in annual.items():
        full = np.full((t, *shape), np.nan, np.float32)
        if not annual_all_nan:
            full[jan1] = values
            full[:, sea] = np.nan if name != "lc_water_bodies" else full[:, sea]
        data[name] = full
    # danger on t+1 from days t-2 .. t (hot and dry), on forested, populated land
    heat = (data["t2m"] - 290 - 8 * season) / 3 - (data["rh"] - 0.55 + 0.15 * season) / 0.15
    heat = np.nan_to_num(heat)
    recent = sum(np.roll(heat, k, axis=0) for k in range(3)) / 3
    forest = np.nan_to_num(cover[0, :, :, 1]) + np.nan_to_num(population[0]) / 300
    danger = recent + 2 * forest + rng.normal(0, 0.3, heat.shape)
    danger[:3] = -np.inf
    danger[:, sea] = -np.inf
    fire = danger > np.quantile(danger[np.isfinite(danger)], 0.9993)
    hectares = np.where(fire, rng.lognormal(3.5, 1.2, fire.shape), 0.0)
    data["ignition_points"] = hectares  # at t: fires that ignite on t+1
    burned = np.zeros((t, *shape), np.float32)
    for day, r, c in np.argwhere(fire):  # a final perimeter around each ignition
        burned[day, max(0, r - 1) : r + 2, max(0, c - 1) : c + 2] = 1
    data["burned_areas"] = burned
    variables = {n: (("time", "y", "x"), a.astype(np.float32)) for n, a in data.items()}
    variables |= {n: (("y", "x"), a.astype(np.float32)) for n, a in static.items()}
    variables["spatial_ref"] = ((), np.int64(0))
    for name in drop:
        variables.pop(name)
    ds = xr.Dataset(variables, coords={"time": times, "y": y, "x": x})
    ds["spatial_ref"].attrs = {"crs_wkt": WGS84_WKT, "spatial_ref": WGS84_WKT}
    ds = ds.rename(rename or {})
    encoding = {
        name: {"chunks": (1, size, size) if ds[name].ndim == 3 else (size, size)}
        for name in ds.data_vars
        if ds[name].ndim
    }
    import zarr

    # chunks encoded in batches (zarr's own setting): the same store, written in 2/3 the time
    with zarr.config.set({"codec_pipeline.batch_size": 64}):
        ds.to_zarr(path, mode="w", zarr_format=2, encoding=encoding, consolidated=True)
    return path


def write_release_csv(datamodule, folder: Path) -> Path:
    """The samples a cube gave ``datamodule`` (``data.name: mesogeos``), written as the
    release's ``positives.csv`` and ``negatives.csv``: 30 rows per sample, oldest day
    first, ``time`` (the index of ``Dataset.to_dataframe()``), the variables, the cell's
    ``x``/``y``, ``burned_area_has``, ``time_idx`` and ``sample``
    (``ml_tracks/a.fire_danger/dataset-extraction/sample_*.ipynb``)."""
    import xarray as xr

    folder.mkdir(parents=True, exist_ok=True)
    samples, rows = datamodule.samples, datamodule.rows
    cube = xr.open_zarr(datamodule.root)
    lon, lat = cube["x"].values, cube["y"].values
    lag = samples.dynamic.shape[1]
    for name, label in (("positives.csv", 1.0), ("negatives.csv", 0.0)):
        chosen = np.flatnonzero(samples.label == label)
        frames = []
        for number, i in enumerate(chosen):
            days = pd.date_range(end=pd.Timestamp(samples.day[i]), periods=lag, freq="D")
            frame = pd.DataFrame(samples.dynamic[i], columns=datamodule.dynamic_vars, index=days)
            frame.index.name = "time"
            for c, var in enumerate(datamodule.static_vars):
                frame[var] = samples.static[i, c]
            frame["x"], frame["y"] = lon[rows[i, 2]], lat[rows[i, 1]]
            frame["burned_area_has"] = samples.hectares[i]
            frame["time_idx"] = np.arange(lag)
            frame["sample"] = number
            frames.append(frame)
        pd.concat(frames).to_csv(folder / name)
    return folder

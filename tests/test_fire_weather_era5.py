"""Fire-weather indices as ERA5 regression targets, decoded from a (tiny) Aurora latent."""

from __future__ import annotations

import numpy as np
import pytest

from eofm.errors import EofmError
from tests.test_weather import tiny_repo  # noqa: F401 - fixture reuse
from tests.weather import copy_era5, fire_season_era5, hourly_daily_files_era5


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    return fire_season_era5(tmp_path_factory.mktemp("fire-era5") / "era5")


def test_targets_are_derived_per_day_from_noon_weather(warm) -> None:
    from eofm.data.era5 import WeatherSpec, open_source

    spec = WeatherSpec(
        surf_vars=["2t", "10u", "10v"],
        atmos_vars=["u", "v", "q"],
        static_vars=[],
        targets=["fwi", "ffmc"],
        allow_missing=["msl", "z", "t", "lsm", "slt"],
        lon_range=[0, 9.75],
    )
    src = open_source(warm, spec)
    ffmc = np.stack([src.read("surf", "ffmc", i) for i in range(len(src.times))])
    days = src.times.astype("datetime64[D]")
    for day in np.unique(days):  # one value per day, for every step of it
        steps = ffmc[days == day]
        assert np.array_equal(steps[0], steps[-1], equal_nan=True)
    defined = np.isfinite(ffmc)
    # the season starts after 3 warm days (cold mountain cells may never start)
    assert not defined[:3].any() and defined[-4:].mean() > 0.8
    assert np.nanmin(ffmc) > 0 and np.nanmax(ffmc) <= 101


def test_missing_inputs_for_fire_targets_are_named(tmp_path) -> None:
    from eofm.data.era5 import WeatherSpec, open_source

    root = copy_era5(tmp_path / "era5")  # the real sample: no 2 m temperature
    spec = WeatherSpec(
        surf_vars=["10u", "10v"],
        atmos_vars=["u", "v", "q"],
        static_vars=[],
        targets=["fwi"],
        allow_missing=["2t", "msl", "z", "t", "lsm", "slt"],
        lon_range=[0, 9.75],
    )
    with pytest.raises(EofmError, match=r"lacks \['2t'\]"):
        open_source(root, spec)


def test_fire_weather_decoder_recipe_end_to_end(warm, tmp_path, tiny_repo) -> None:  # noqa: F811
    from eofm.cli import main

    run = tmp_path / "run"
    args = [
        f"data.root={warm}",
        f"backbone.name=hf://{tiny_repo}",
        "decoder.channels=16",
        "data.levels=[300,500,850]",
        "data.lat_range=[55.0,51.25]",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
    ]
    assert main(["fit", "era5_aurora_fire_weather_decoder", *args, "--run-dir", str(run)]) == 0
    assert main(["test", str(run)]) == 0
    import json

    metrics = json.loads((run / "test_metrics.json").read_text())["metrics"]
    assert {"test/rmse_fwi", "test/rmse_ffmc", "test/mae_dc"} <= set(metrics)
    assert all(np.isfinite(v) for k, v in metrics.items() if k.startswith("test/rmse"))


def test_local_noon_is_the_step_nearest_12_minus_lon_over_15() -> None:
    from eofm.data.fire_weather import local_noon_steps

    times = np.arange(
        np.datetime64("2020-01-01T00:00"), np.datetime64("2020-01-04T00:00"), np.timedelta64(1, "h")
    ).astype("datetime64[ns]")
    lon = np.array([0.0, 10.0, 90.0, 170.0, 190.0, 350.0])  # 190 = 170 W, 350 = 10 W
    days, steps = local_noon_steps(times, lon)
    hours = (times[steps] - times[steps].astype("datetime64[D]")) / np.timedelta64(1, "h")
    assert np.array_equal(hours[0], [12, 11, 6, 1, 23, 13])  # round(12 - lon / 15) mod 24
    # 170 W's local noon falls late on the UTC day; 170 E's early: each is its own local day
    local = times[steps].astype("datetime64[D]")
    assert np.array_equal(local[:, 4], days) and np.array_equal(local[:, 3], days)
    # only days whose noon is in the record at every longitude: the 3 UTC days
    assert [str(d) for d in days] == ["2020-01-01", "2020-01-02", "2020-01-03"]


def test_fire_targets_use_local_noon_and_snow(tmp_path) -> None:
    """On the real sample's hourly grid (0-10 E), noon is 12 UTC at 0 E and 11 UTC at 10 E;
    snow on the ground (ERA5 ``sd``) keeps the season from starting."""
    import xarray as xr

    from eofm.data.fire_weather import era5_fire_targets

    era5 = _sample_era5()
    fields = {}
    for name, var in (("2t", "d2m"), ("d2m", "d2m"), ("10u", "u10"), ("10v", "v10"), ("tp", "tp")):
        with xr.open_dataset(era5 / f"ERA5_2020-01-01_{var}.nc") as ds:
            fields[name] = ds[var].load().rename({"latitude": "latitude"})
    fields["2t"] = fields["2t"] + 25.0  # warm and dry: a season can start
    days = 8
    fields = {  # the real day repeated: 8 days of hourly steps
        k: xr.concat(
            [v.assign_coords(time=v["time"] + np.timedelta64(d, "D")) for d in range(days)], "time"
        )
        for k, v in fields.items()
    }
    plain = era5_fire_targets(fields, ["ffmc"], "sample")["ffmc"]
    assert plain.dims == fields["2t"].dims and plain.shape == fields["2t"].shape
    # the value of a step is the local day's: constant over each local day at a longitude
    lon = plain["longitude"].values
    east_edge = plain.sel(longitude=lon[-1]).values  # 10 E: local day = UTC + 40 min
    west_edge = plain.sel(longitude=lon[0]).values
    assert np.isfinite(west_edge[-24:]).any()
    assert np.array_equal(west_edge[-24], west_edge[-1], equal_nan=True)
    assert np.array_equal(east_edge[-24], east_edge[-2], equal_nan=True)
    snowy = dict(fields, sd=xr.full_like(fields["tp"], 0.05))  # 5 cm water: ~17 cm of snow
    covered = era5_fire_targets(snowy, ["ffmc"], "sample")["ffmc"]
    assert np.isfinite(plain.values).any() and not np.isfinite(covered.values).any()


def _sample_era5():
    from tests.realdata import SHARED

    return SHARED.parent / "era5"


def test_hourly_daily_files_give_fire_targets(tmp_path) -> None:
    """Issue 34 item 9: ten days of hourly ERA5 in daily files (``ERA5_2020-01-DD_<var>.nc``,
    the real day repeated, t2m = d2m + 25 K) are read as ten days, not as the first file's
    one (the cause of "Target fwi has no finite value"); the indices start on the first
    day with a whole 24 h of rain before its noon (day 2), the season 3 warm days later."""
    import warnings

    from eofm.data.era5 import ERA5DataModule, WeatherSpec

    root = hourly_daily_files_era5(tmp_path / "era5")
    spec = WeatherSpec(
        surf_vars=["2t", "10u", "10v"],
        atmos_vars=["u", "v", "q"],
        static_vars=[],
        targets=["fwi", "ffmc"],
        allow_missing=["msl", "z", "t", "lsm", "slt"],
        lon_range=[0, 9.75],
        lead_hours=24,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "invalid value" noise from FFMC
        dm = ERA5DataModule(root, spec)
    src = dm.source
    assert len(src.times) == 240 and str(src.times[-1]).startswith("2020-01-10T23")
    fwi = np.stack([src.read("surf", "fwi", i) for i in range(12, 240, 24)])  # noon, per day
    defined = np.isfinite(fwi).mean(axis=(1, 2))
    # day 1 lacks the 24 h before its noon; days 2-4 start the season; then defined
    assert (defined[:4] == 0).all() and (defined[4:] > 0.9).all()
    assert np.isfinite(dm.mean).all()


def test_fire_targets_on_too_few_days_name_the_cause(tmp_path) -> None:
    from eofm.data.era5 import ERA5DataModule, WeatherSpec

    root = hourly_daily_files_era5(tmp_path / "era5", days=3)
    spec = WeatherSpec(
        surf_vars=["2t", "10u", "10v"],
        atmos_vars=["u", "v", "q"],
        static_vars=[],
        targets=["fwi"],
        allow_missing=["msl", "z", "t", "lsm", "slt"],
        lon_range=[0, 9.75],
    )
    with pytest.raises(EofmError, match=r"no finite value.*3 days at or above 6 degC.*3 day\(s\)"):
        ERA5DataModule(root, spec)

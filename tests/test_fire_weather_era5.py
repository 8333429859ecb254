"""Fire-weather indices as ERA5 regression targets, decoded from a (tiny) Aurora latent."""

from __future__ import annotations

import numpy as np
import pytest

from eofm.errors import EofmError
from tests.test_weather import tiny_repo  # noqa: F401 - fixture reuse
from tests.weather import copy_era5, fire_season_era5


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

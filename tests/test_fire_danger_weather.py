"""Fire-danger heads with a weather run's view of each day as extra dynamic inputs.

The weather run is the fire-weather decoder recipe trained on a tiny official-layout
Aurora (loopback Hub) over warm ERA5 days made from the real sample; the cube lies inside
that ERA5 grid and covers the same days.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eofm.cli import main
from tests.firecube import make_cube
from tests.test_weather import tiny_repo  # noqa: F401 - fixture reuse
from tests.weather import fire_season_era5

DAYS = 12
SPLITS = "{train: [2020-01-04, 2020-01-08], val: [2020-01-09, 2020-01-10], test: [2020-01-11, 2020-01-12]}"


@pytest.fixture(scope="module")
def era5(tmp_path_factory) -> Path:
    return fire_season_era5(tmp_path_factory.mktemp("era5") / "era5", days=DAYS)


@pytest.fixture(scope="module")
def weather_run(era5: Path, tmp_path_factory, tiny_repo) -> Path:  # noqa: F811
    run = tmp_path_factory.mktemp("weather") / "run"
    args = [
        f"data.root={era5}",
        f"backbone.name=hf://{tiny_repo}",
        "decoder.channels=8",
        "data.levels=[300,500,850]",
        "data.lat_range=[55.0,51.25]",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "task.targets=[fwi,ffmc]",
    ]
    assert main(["fit", "era5_aurora_fire_weather_decoder", *args, "--run-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    return make_cube(
        tmp_path_factory.mktemp("cube") / "mesogeos_cube.zarr",
        start="2020-01-01",
        days_per_year=DAYS,
        size=10,
        origin=(53.0, 4.0),
    )


def fit_args(cube: Path, run_dir: Path, **extra: object) -> list[str]:
    values = {
        "data.root": str(cube),
        "data.lag_days": 3,
        "data.min_burned_ha": 0.0,
        "data.batch_size": 16,
        "data.split_dates": SPLITS,
        "decoder.channels": 8,
        "trainer.max_epochs": 2,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": "false",
        **extra,
    }
    return [*(f"{k}={v}" for k, v in values.items()), "--run-dir", str(run_dir)]


@pytest.mark.parametrize("kind", ["outputs", "latent"])
def test_weather_run_joins_the_dynamic_inputs(
    cube: Path, weather_run: Path, tmp_path: Path, kind: str
) -> None:
    run = tmp_path / "run"
    extra = {"data.weather_run": str(weather_run), "data.weather_features": kind}
    assert main(["fit", "mesogeos_fire_danger_gru", *fit_args(cube, run, **extra)]) == 0
    manifest = json.loads((run / "model.json").read_text())
    weather = manifest["inputs"]["weather"]
    names = weather["names"]
    if kind == "outputs":
        assert names == ["weather:fwi", "weather:ffmc"]
    else:
        assert len(names) > 2 and names[0] == "weather:latent_0"
    cube_vars = manifest["inputs"]["dynamic_vars"]
    assert manifest["bands"][: len(cube_vars) + len(names)] == [*cube_vars, *names]
    assert main(["test", str(run)]) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())["metrics"]
    assert np.isfinite(metrics["test/AUPRC"])
    out = tmp_path / "maps"
    assert (
        main(["predict", "--model", str(run), str(cube), "--date", "2020-01-11", "--out", str(out)])
        == 0
    )
    import rasterio

    with rasterio.open(out / "danger_2020-01-11.tif") as ds:
        probabilities = ds.read(1)
    assert np.isfinite(probabilities).all() and ((probabilities >= 0) & (probabilities <= 1)).all()


def test_weather_features_are_the_runs_outputs_at_the_pixel(cube: Path, weather_run: Path) -> None:
    """The fwi feature of a sample's day equals the run's own prediction at that cell."""
    import xarray as xr

    from eofm.data.firecube import weather_windows
    from eofm.families.classification import ClassificationFamily
    from eofm.recipe import load_recipe

    recipe = load_recipe(
        "mesogeos_fire_danger_gru",
        [f"data.root={cube}", f"data.weather_run={weather_run}"],
    )
    features = ClassificationFamily().weather_features(recipe)
    ds = xr.open_zarr(cube)
    rows = np.array([[5, 2, 3], [9, 7, 1]])  # (label day, y, x)
    got = weather_windows(
        features, rows, ds["time"].values, (ds["y"].values, ds["x"].values), lag=2, patch=1
    )
    assert got.shape == (2, 2, 2, 1, 1)
    run = features.run
    lat, lon = run.grid()
    for n, (day, y, x) in enumerate(rows):
        for k, d in enumerate((day - 2, day - 1)):
            date = ds["time"].values[d].astype("datetime64[D]")
            now = features.step_for(date)
            assert str(run.target_time(now))[:10] == str(date)
            fields = dict(run.outputs([now]))[now]
            i = np.abs(lat - ds["y"].values[y]).argmin()
            j = np.abs(lon - ds["x"].values[x]).argmin()
            assert np.allclose(got[n, k, :, 0, 0], fields[:, i, j])
    # a day's grid is computed once: asking again (another split, another map block) reuses it
    calls = []
    original = run.outputs
    run.outputs = lambda steps: calls.append(list(steps)) or original(steps)
    weather_windows(
        features, rows, ds["time"].values, (ds["y"].values, ds["x"].values), lag=2, patch=1
    )
    assert calls == [[]]


def test_a_cube_outside_the_weather_grid_is_named(
    weather_run: Path, tmp_path: Path, capsys
) -> None:
    cube = make_cube(
        tmp_path / "cube.zarr", start="2020-01-01", days_per_year=DAYS, size=6, origin=(38.0, 22.0)
    )
    run = tmp_path / "run"
    args = fit_args(cube, run, **{"data.weather_run": str(weather_run)})
    assert main(["fit", "mesogeos_fire_danger_gru", *args]) == 1
    err = capsys.readouterr().err
    assert "latitudes" in err and "outside the grid" in err and "Traceback" not in err
    assert not run.exists()


def test_a_fire_run_fed_by_a_random_init_weather_run_says_so(
    cube: Path, weather_run: Path, tmp_path: Path
) -> None:
    """Random initialisation is visible wherever the model is described (issue 33): also
    when it is the weather run feeding a fire run's inputs that had no pretrained weights."""
    import shutil

    import rasterio

    from eofm.publishing.provenance import RANDOM_INIT_ATTRIBUTE

    random_weather = tmp_path / "weather"
    shutil.copytree(weather_run, random_weather)
    record = json.loads((random_weather / "model.json").read_text())
    assert record["backbone"]["pretrained_loaded"] is True
    record["backbone"]["pretrained_loaded"] = False  # as a --allow-random-init run records it
    (random_weather / "model.json").write_text(json.dumps(record))
    run = tmp_path / "run"
    extra = {"data.weather_run": str(random_weather), "trainer.max_epochs": 1}
    assert main(["fit", "mesogeos_fire_danger_gru", *fit_args(cube, run, **extra)]) == 0
    assert json.loads((run / "model.json").read_text())["inputs"]["weather"]["random_init"]
    assert main(["test", str(run)]) == 0
    assert "random initialisation" in json.loads((run / "test_metrics.json").read_text())["warning"]
    out = tmp_path / "maps"
    argv = ["predict", "--model", str(run), str(cube), "--date", "2020-01-11", "--out", str(out)]
    assert main(argv) == 0
    with rasterio.open(out / "danger_2020-01-11.tif") as ds:
        assert RANDOM_INIT_ATTRIBUTE in ds.tags()

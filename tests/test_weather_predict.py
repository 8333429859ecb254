"""Weather runs end to end: predict to CF NetCDF / zarr, publish, and the hf:// round trip
(real ERA5 sample, tiny official-layout Aurora through the loopback Hub)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from eofm.cli import main
from tests.test_weather import tiny_repo  # noqa: F401 - fixture reuse
from tests.weather import copy_era5, regression_recipe, rewrite


@pytest.fixture(scope="module")
def era5(tmp_path_factory) -> Path:
    return copy_era5(tmp_path_factory.mktemp("era5") / "era5")


@pytest.fixture(scope="module")
def weather_run(era5: Path, tmp_path_factory, tiny_repo) -> Path:  # noqa: F811
    from eofm.commands.fit import fit
    from eofm.recipe import load_recipe

    recipe = regression_recipe(era5, "hydrology", cache={"mode": "off"})
    run = fit(load_recipe(recipe), tmp_path_factory.mktemp("run") / "run")
    assert main(["test", str(run)]) == 0
    return run


def predict(*args: str) -> int:
    return main(["predict", *args, "--no-progress"])


def test_predictions_are_cf_netcdf_with_the_runs_values(
    weather_run: Path, era5: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert predict("--model", str(weather_run), str(era5), "--out", str(out)) == 0
    (path,) = out.glob("*.nc")
    assert path.name == "hydrology_20200101T12_20200101T23.nc"  # 6 h lead after 06..17 UTC
    with xr.open_dataset(path) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["eofm_version"]
        assert ds.attrs["backbone_repo"] == "tester/aurora-tiny"
        assert len(ds.attrs["backbone_revision"]) == 40
        assert set(ds.data_vars) == {"tp", "e"} and ds["tp"].dims == ("time", "lat", "lon")
        assert ds["tp"].attrs["units"] == "m" and "precipitation" in ds["tp"].attrs["long_name"]
        assert "sum" in ds["tp"].attrs["cell_methods"]
        assert ds["lat"].attrs["standard_name"] == "latitude"
        assert ds["lon"].attrs["units"] == "degrees_east"
        assert ds.sizes == {"time": 12, "lat": 16, "lon": 40}
        assert str(ds["time"].values[0])[:13] == "2020-01-01T12"
        assert ds["tp"].encoding["chunksizes"] == (1, 16, 40)
        saved = ds["tp"].values
    # the values are the run's own predictions in physical units
    from eofm.families.regression import RegressionFamily
    from eofm.families.restore import load_trained

    trained = load_trained(str(weather_run))
    run = RegressionFamily().weather_run(trained, str(era5))
    first = run.usable_steps()[0]
    (now, fields), *_ = run.outputs([first])
    assert np.allclose(saved[0], fields[0], atol=1e-7)
    # a rerun skips the finished file; --overwrite replaces it; nothing partial is left
    stamp = path.stat().st_mtime_ns
    assert predict("--model", str(weather_run), str(era5), "--out", str(out)) == 0
    assert path.stat().st_mtime_ns == stamp
    assert predict("--model", str(weather_run), str(era5), "--out", str(out), "--overwrite") == 0
    assert [p.name for p in out.iterdir()] == [path.name]


def test_zarr_and_a_time_range(weather_run: Path, era5: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--model", str(weather_run), str(era5), "--out", str(out), "--format", "zarr"]
    assert predict(*args, "--start", "2020-01-01T15", "--end", "2020-01-01T18") == 0
    (store,) = out.glob("*.zarr")
    with xr.open_zarr(store) as ds:
        assert [str(t)[11:13] for t in ds["time"].values] == ["15", "16", "17", "18"]
        assert ds["e"].attrs["units"] and ds.attrs["Conventions"] == "CF-1.8"


@pytest.mark.parametrize(
    ("change", "needle", "code"),
    [
        ("range", "outside the data", 2),
        ("grid", "is not the run's", 2),
        ("variable", "are missing from", 2),
    ],
)
def test_bad_weather_inputs_are_named(
    weather_run: Path, era5: Path, tmp_path: Path, change: str, needle: str, code: int, capsys
) -> None:
    import shutil

    root = era5
    extra: list[str] = []
    if change == "range":
        extra = ["--start", "2021-06-01", "--end", "2021-06-02"]
    elif change == "grid":
        root = copy_era5(tmp_path / "shifted")
        for path in root.glob("*.nc"):
            rewrite(path, lambda ds: ds.assign_coords(latitude=ds["latitude"] - 1.0))
    else:
        root = tmp_path / "fewer"
        shutil.copytree(era5, root)
        (root / "ERA5_2020-01-01_pl_q.nc").unlink()
    out = tmp_path / "out"
    assert predict("--model", str(weather_run), str(root), "--out", str(out), *extra) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_publish_then_predict_from_the_hub_gives_the_same_file(
    weather_run: Path, era5: Path, tmp_path: Path, hub, capsys
) -> None:
    from safetensors.torch import load_file

    assert main(["publish", str(weather_run), "--repo", "tester/hydrology"]) == 0
    sha = hub.commits("tester/hydrology")[-1]
    files = hub.repos[("model", "tester/hydrology")].commits[sha].files
    assert set(files) == {"README.md", "config.json", "adapter_model.safetensors", "recipe.yaml"}
    config = json.loads(files["config.json"])
    assert config["adapter_only"] and config["backbone"]["repo"] == "tester/aurora-tiny"
    assert config["targets"]["tp"]["units"] == "m" and config["timing"]["lead_hours"] == 6
    card = files["README.md"].decode()
    for needle in ("| tp |", "accumulated over the 6 h", "16 x 40 cells", "6 h", "test/rmse_tp"):
        assert needle in card, needle
    weights = tmp_path / "adapter.safetensors"
    weights.write_bytes(files["adapter_model.safetensors"])
    keys = load_file(str(weights))
    assert keys and not any(k.startswith("backbone.") and "weight" in k for k in keys)
    assert len(files["adapter_model.safetensors"]) < 2_000_000
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert predict("--model", str(weather_run), str(era5), "--out", str(local)) == 0
    assert predict("--model", f"hf://tester/hydrology@{sha}", str(era5), "--out", str(remote)) == 0
    (a,), (b,) = local.glob("*.nc"), remote.glob("*.nc")
    with xr.open_dataset(a) as left, xr.open_dataset(b) as right:
        for name in ("tp", "e"):
            assert np.array_equal(left[name].values, right[name].values)
        assert np.array_equal(left["time"].values, right["time"].values)
        assert left["tp"].attrs == right["tp"].attrs


def test_climatology_helper_makes_acc_work_end_to_end(
    era5: Path, tmp_path: Path, tiny_repo
) -> None:  # noqa: F811
    """eofm climatology writes the training split's mean; with it, fit and test score ACC."""
    import yaml

    recipe = regression_recipe(era5, "acc", cache={"mode": "off"})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    clim = tmp_path / "climatology.nc"
    assert main(["climatology", str(path), "--out", str(clim)]) == 0
    with xr.open_dataset(clim) as ds:
        assert ds["tp"].dims == ("latitude", "longitude") and ds["tp"].shape == (16, 40)
        assert (
            ds["tp"].attrs["units"] == "m" and "training samples" in ds["tp"].attrs["cell_methods"]
        )
        mean_tp = float(ds["tp"].mean())
    assert main(["climatology", str(path), "--out", str(clim)]) == 2  # never replaced
    # the climatology is of the accumulated target: the 6 h sums of the training split
    from eofm.families.regression import RegressionFamily
    from eofm.recipe import load_recipe

    dm = RegressionFamily().build_datamodule(load_recipe(recipe))
    train = dm.dataset("train")
    sums = [train.target_field("tp", now)[:16].mean() for now in train.now]
    assert mean_tp == pytest.approx(float(np.mean(sums)), rel=1e-5)
    run = tmp_path / "run"
    args = [str(path), f"task.climatology={clim}", "--run-dir", str(run)]
    assert main(["fit", *args]) == 0
    assert main(["test", str(run)]) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())["metrics"]
    assert -1.0 <= metrics["test/acc_tp"] <= 1.0 and "test/acc_e" in metrics

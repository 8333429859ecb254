"""Next-day fire danger on a Mesogeos-layout cube: splits, models, scores, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eofm.cli import main
from eofm.data.firecube import FireCubeDataModule
from eofm.data.firecube_config import MESOGEOS_DYNAMIC, MESOGEOS_STATIC
from eofm.errors import EofmError
from tests.firecube import make_cube


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    return make_cube(tmp_path_factory.mktemp("cube") / "mesogeos_cube.zarr")


def module(root: Path, **kw) -> FireCubeDataModule:
    options = dict(dynamic_vars=MESOGEOS_DYNAMIC, static_vars=MESOGEOS_STATIC, lag_days=5)
    return FireCubeDataModule(root, **{**options, **kw})


def fit_args(root: Path, run: Path, **extra: object) -> list[str]:
    values = {
        "data.root": str(root),
        "data.lag_days": 5,
        "data.min_burned_ha": 0.0,
        "data.batch_size": 32,
        "decoder.channels": 32,
        "trainer.max_epochs": 25,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": "false",
        "optimizer.lr": 0.005,
        **extra,
    }
    return [*(f"{k}={v}" for k, v in values.items()), "--run-dir", str(run)]


def test_year_splits_never_share_a_day(cube: Path) -> None:
    dm = module(cube)
    days = {s: set(dm.label_days(s)) for s in ("train", "val", "test")}
    assert not days["train"] & days["val"] and not days["train"] & days["test"]
    assert not days["val"] & days["test"]
    assert {d[:4] for d in days["test"]} == {"2021"} and {d[:4] for d in days["val"]} == {"2020"}
    sample = dm.dataset("train")[0]
    assert sample[0].shape == (5, len(MESOGEOS_DYNAMIC), 1, 1)
    labels = dm.tensors["train"]["label"]
    assert 0.2 < float(labels.mean()) < 0.45  # one positive for two negatives


def test_buffer_keeps_negatives_away_from_every_positive(cube: Path) -> None:
    dm = module(cube, buffer_pixels=1, buffer_days=2)
    rows = np.concatenate(list(dm.splits.values()))
    import xarray as xr

    fire = xr.open_zarr(cube)["ignition_points"].values > 0
    for day, y, x in rows:
        if not fire[day, y, x]:
            box = fire[max(0, day - 2) : day + 3, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
            assert not box.any()


@pytest.mark.parametrize("recipe", ["mesogeos_fire_danger_loan", "mesogeos_fire_danger_gru"])
def test_recipes_learn_the_planted_signal_and_shuffled_labels_do_not(
    cube: Path, tmp_path: Path, recipe: str, monkeypatch
) -> None:
    run = tmp_path / "run"
    assert main(["fit", recipe, *fit_args(cube, run)]) == 0
    assert main(["test", str(run)]) == 0
    record = json.loads((run / "test_metrics.json").read_text())
    rate = record["test_positive_rate"]
    auprc = record["metrics"]["test/AUPRC"]
    assert auprc > rate + 0.3, (auprc, rate)
    assert {"test/AUROC", "test/F1", "test/ECE", "test/precision", "test/recall"} <= set(
        record["metrics"]
    )

    original = FireCubeDataModule._materialise

    def shuffled(self, dynamic, static, labels, rows):
        out = original(self, dynamic, static, labels, rows)
        out["label"] = out["label"][np.random.default_rng(1).permutation(len(out["label"]))]
        return out

    monkeypatch.setattr(FireCubeDataModule, "_materialise", shuffled)
    noise = tmp_path / "noise"
    assert main(["fit", recipe, *fit_args(cube, noise)]) == 0
    assert main(["test", str(noise)]) == 0
    shuffled_auprc = json.loads((noise / "test_metrics.json").read_text())["metrics"]["test/AUPRC"]
    assert shuffled_auprc < rate + 0.15, (shuffled_auprc, rate)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"drop": ("ignition_points",)}, "no target layer 'ignition_points'"),
        ({"drop": ("ndvi",)}, "no dynamic variable 'ndvi'"),
        ({"static_size": 10}, "not on the dynamic variables' grid"),
    ],
)
def test_bad_cubes_are_clear_errors_and_leave_no_run_dir(
    tmp_path: Path, kwargs: dict, needle: str, capsys
) -> None:
    cube = make_cube(tmp_path / "bad.zarr", days_per_year=10, **kwargs)
    with pytest.raises(EofmError, match=needle):
        module(cube)
    run = tmp_path / "run"
    # a missing layer is found in the cube's metadata before torch loads (exit 2)
    expected = 1 if "grid" in needle else 2
    assert main(["fit", "mesogeos_fire_danger_gru", *fit_args(cube, run)]) == expected
    assert needle in capsys.readouterr().err and not run.exists()


def test_a_lag_longer_than_the_record_is_refused(cube: Path) -> None:
    with pytest.raises(EofmError, match="data.lag_days 500"):
        module(cube, lag_days=500)


def test_danger_map_over_the_cube_grid(cube: Path, tmp_path: Path, capsys) -> None:
    import rasterio
    import xarray as xr

    run = tmp_path / "run"
    assert (
        main(["fit", "mesogeos_fire_danger_gru", *fit_args(cube, run, **{"trainer.max_epochs": 3})])
        == 0
    )
    out = tmp_path / "maps"
    args = ["predict", "--model", str(run), str(cube), "--out", str(out), "--no-progress"]
    assert main(args) == 2  # a danger map needs its day
    assert "--date" in capsys.readouterr().err
    assert main([*args, "--date", "2021-07-20"]) == 0
    ds = xr.open_zarr(cube)
    with rasterio.open(out / "danger_2021-07-20.tif") as tif:
        probs = tif.read(1)
        assert (tif.width, tif.height) == (ds.sizes["x"], ds.sizes["y"])
        assert tif.crs.to_epsg() == 4326
        x0, y0 = tif.xy(0, 0)  # the first cell's centre is the cube's first coordinate
        assert abs(x0 - float(ds.x[0])) < 1e-6 and abs(y0 - float(ds.y[0])) < 1e-6
    assert np.isfinite(probs).all() and 0 <= probs.min() and probs.max() <= 1
    assert main([*args, "--date", "2021-07-20"]) == 1  # never overwritten silently
    assert main([*args, "--date", "2030-01-01"]) == 2  # the cube's time axis, before the model
    assert "not in the cube" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("dates", "needle"),
    [
        ("{train: [2019-07-01, 2020-07-05], val: [2020-07-05, 2020-07-20], test: [2021-07-01, 2021-08-01]}", "share days"),
        ("{train: [2019-07-01, 2019-08-01], val: [2020-07-01, 2020-08-01]}", "exactly train, val and test"),
        ("{train: [2019-08-01, 2019-07-01], val: [2020-07-01, 2020-08-01], test: [2021-07-01, 2021-08-01]}", "ends before"),
    ],
)  # fmt: skip
def test_split_dates_are_checked_before_anything(
    cube: Path, tmp_path: Path, dates: str, needle: str, capsys
) -> None:
    run = tmp_path / "run"
    args = fit_args(cube, run, **{"data.split_dates": dates})
    assert main(["fit", "mesogeos_fire_danger_gru", *args]) == 2
    assert needle in capsys.readouterr().err and not run.exists()


def test_split_dates_choose_the_label_days(cube: Path) -> None:
    ranges = {
        "train": ["2019-07-01", "2019-08-09"],
        "val": ["2020-07-01", "2020-07-20"],
        "test": ["2020-07-21", "2021-08-09"],
    }
    dm = module(cube, split_dates=ranges)
    days = {s: dm.label_days(s) for s in ("train", "val", "test")}
    assert all(d[:4] == "2019" for d in days["train"])
    assert all("2020-07-01" <= d <= "2020-07-20" for d in days["val"])
    assert min(days["test"]) >= "2020-07-21"


def test_calibrated_fire_danger_keeps_its_decisions(cube: Path, tmp_path: Path) -> None:
    """eofm calibrate on a fire-danger run: a temperature, an equivalent threshold, and
    test pictures of the confusion at the threshold and the reliability."""
    import rasterio

    run = tmp_path / "run"
    args = fit_args(cube, run, **{"trainer.max_epochs": 3})
    assert main(["fit", "mesogeos_fire_danger_gru", *args]) == 0
    assert main(["calibrate", str(run)]) == 0
    record = json.loads((run / "model.json").read_text())["calibration"]
    assert record["temperature"] > 0 and 0 < record["threshold_calibrated"] < 1
    assert record["after"]["NLL"] <= record["before"]["NLL"] + 1e-9
    assert main(["test", str(run)]) == 0
    payload = json.loads((run / "test_metrics.json").read_text())
    matrix = np.array(payload["confusion"]["truth_by_predicted"])
    assert matrix.sum() == payload["test_samples"]
    assert (run / "confusion.png").is_file() and (run / "reliability.png").is_file()
    date = json.loads((run / "test_metrics.json").read_text())["test_days"][0]
    out = tmp_path / "maps"
    assert main(["predict", "--model", str(run), str(cube), "--date", date, "--out", str(out)]) == 0
    with rasterio.open(out / f"danger_{date}.tif") as ds:
        assert np.nanmax(ds.read(1)) <= 1.0


def test_region_split_of_a_cube_by_latitude(cube: Path) -> None:
    """The cube spans 37.9-38 N: bands of 0.05 degree split its pixels north and south."""
    dm = module(cube, split={"by": "latitude_band", "width": 0.05, "test": ["37.95N-38N"]})
    import xarray as xr

    lat = xr.open_zarr(cube)["y"].values
    for split, rows in dm.splits.items():
        inside = (lat[rows[:, 1]] >= 37.95) & (lat[rows[:, 1]] < 38.0)
        assert inside.all() if split == "test" else not inside.any()
    assert len(dm.splits["val"]) and len(dm.splits["train"])

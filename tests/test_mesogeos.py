"""Mesogeos Track A on a generated cube in the release's layout (tests/firecube.py):
sampling as the release's notebooks do it, the CSV path, recipes, danger maps, errors.
Checks that need a cube but not three years of it use one season of the same layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from eofm.cli import main
from eofm.data.mesogeos_config import TRACK_A_DYNAMIC, TRACK_A_STATIC
from eofm.errors import EofmError
from tests.firecube import make_mesogeos_cube, write_release_csv

SPLITS = {"train": [2019], "val": [2020], "test": [2021]}
SMALL = {"exclusion_px": 5, "min_class_fires": 1, "split_years": SPLITS}
#: The splits of the one-season cube (``short``): its only year in each.
SEASON = {"train": [2019], "val": [2019], "test": [2019]}


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    return make_mesogeos_cube(tmp_path_factory.mktemp("cube") / "mesogeos_cube.zarr")


@pytest.fixture(scope="module")
def dm(cube: Path):
    return module(cube)


@pytest.fixture(scope="module")
def short(tmp_path_factory) -> Path:
    """The same layout over the release's first season only (2019-04-01 .. 10-31): for the
    checks that need a cube, not three years of it (a quarter of the day-chunks to read)."""
    path = tmp_path_factory.mktemp("short") / "mesogeos_cube.zarr"
    return make_mesogeos_cube(path, days=214)


@pytest.fixture(scope="module")
def short_dm(short: Path):
    return module(short, split_years=SEASON)


@pytest.fixture(scope="module")
def lstm_run(cube: Path, tmp_path_factory) -> Path:
    """One fitted LSTM run: tested by the recipe test, mapped by the danger-map test."""
    run = tmp_path_factory.mktemp("lstm") / "run"
    assert main(["fit", "mesogeos_track_a_lstm", *fit_args(cube, run)]) == 0
    return run


def module(root: Path, **kw):
    from eofm.data.mesogeos import MesogeosDataModule

    options = {"dynamic_vars": TRACK_A_DYNAMIC, "static_vars": TRACK_A_STATIC, **SMALL}
    return MesogeosDataModule(root, **{**options, **kw})


def fit_args(root: Path, run: Path, **extra: object) -> list[str]:
    values = {
        "data.root": str(root),
        "data.exclusion_px": 5,
        "data.min_class_fires": 1,
        "data.split_years": "{train: [2019], val: [2020], test: [2021]}",
        "data.batch_size": 32,
        "decoder.channels": 16,
        "trainer.max_epochs": 1,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": "false",
        **extra,
    }
    return [*(f"{k}={v}" for k, v in values.items()), "--run-dir", str(run)]


def copy_cube(cube: Path, to: Path, *, without: str = "", nan: str = "") -> Path:
    """A cheap copy (hard links), less one layer or with one layer all NaN."""
    import zarr

    shutil.copytree(cube, to, copy_function=lambda s, d: Path(d).hardlink_to(s))
    (to / ".zmetadata").unlink()
    if without:
        shutil.rmtree(to / without)
    if nan:
        shutil.rmtree(to / nan)
        shutil.copytree(cube / nan, to / nan)
        array = zarr.open_array(str(to / nan), mode="r+")
        array[:] = np.nan
    return to


def test_the_fixture_has_the_release_layout(cube: Path) -> None:
    import xarray as xr

    ds = xr.open_zarr(cube, chunks=None)  # numpy reads: no dask graph of 913 day-chunks
    assert len(ds.data_vars) == 30 and ds["spatial_ref"].dtype == np.int64
    assert ds["t2m"].dims == ("time", "y", "x") and ds["t2m"].encoding["chunks"] == (1, 24, 24)
    assert {n for n in ds.data_vars if ds[n].dims == ("y", "x")} == {
        "dem", "slope", "aspect", "curvature", "roads_distance"
    }  # fmt: skip
    assert np.all(np.diff(ds["x"].values) > 0) and np.all(np.diff(ds["y"].values) < 0)
    assert all(ds[n].dtype == np.float32 for n in ds.data_vars if n != "spatial_ref")
    days = ds["time"].values.astype("datetime64[D]")
    held = np.isfinite(ds["population"].values).any(axis=(1, 2))
    assert [str(d) for d in days[held]] == ["2019-04-01", "2020-01-01", "2021-01-01"]
    assert np.nanmax(ds["rh"].values) <= 1.0
    sea = np.isnan(ds["t2m"].values).all(axis=0)
    assert sea.any() and not sea.all() and np.isnan(ds["d2m"].values[:, sea]).all()
    ndvi = ds["ndvi"].values[:, ~sea][:, 0]
    assert len(np.unique(ndvi)) == len(
        np.unique(
            (days - days.astype("datetime64[Y]")).astype(int) // 16
            + days.astype("datetime64[Y]").astype(int) * 100
        )
    )


def test_track_a_positives_and_negatives(cube: Path, dm, short: Path, short_dm) -> None:
    import xarray as xr

    ds = xr.open_zarr(cube, chunks=None)  # numpy reads: no dask graph of 913 day-chunks
    rows, label = dm.rows, dm.samples.label
    fires, burned = ds["ignition_points"].values, ds["burned_areas"].values
    t2m = ds["t2m"].values
    pos, neg = rows[label == 1], rows[label == 0]
    # positives: every fire of >= 30 ha off the 2 px border, window t-29 .. t
    hectares = fires[pos[:, 0], pos[:, 1], pos[:, 2]]
    assert (hectares >= 30).all() and np.array_equal(dm.samples.hectares[label == 1], hectares)
    assert (pos[:, 0] >= 29).all() and np.isfinite(t2m[pos[:, 0] - 29, pos[:, 1], pos[:, 2]]).all()
    every = np.argwhere(fires >= 30)
    inner = (every[:, 0] >= 29) & (every[:, 1:] >= 2).all(1) & (every[:, 1:] < 21).all(1)
    assert len(pos) == int(inner.sum())
    # the window ends on the day the fire is recorded (the day before it ignites)
    sample = int(np.flatnonzero(label == 1)[0])
    t, y, x = rows[sample]
    assert np.array_equal(
        dm.samples.dynamic[sample, :, TRACK_A_DYNAMIC.index("t2m")], t2m[t - 29 : t + 1, y, x]
    )
    # negatives: land (t2m) that day, no burned pixel in the 5 px patch, weighted by land cover
    assert np.isfinite(t2m[neg[:, 0], neg[:, 1], neg[:, 2]]).all()
    for t, y, x in neg:
        assert not (burned[t, y - 2 : y + 3, x - 2 : x + 3] == 1).any()
    months = dm.samples.day[label == 0].astype("datetime64[M]").astype(int) % 12 + 1
    summer = ((months >= 3) & (months <= 10)).mean()
    assert summer > 0.75, summer
    years = dm.samples.day.astype("datetime64[Y]").astype(int) + 1970
    for year in (2019, 2020):
        ratio = (years[label == 0] == year).sum() / (years[label == 1] == year).sum()
        assert 1.3 < ratio < 2.7, (year, ratio)
    again = module(short, split_years=SEASON)
    assert len(again.rows) and np.array_equal(again.rows, short_dm.rows)  # seeded


def test_a_vector_mask_keeps_samples_inside(short: Path, short_dm, tmp_path: Path) -> None:
    """Biomes as Track A selects them: features filtered by attribute, cell centres inside."""
    import geopandas as gpd
    from shapely.geometry import box

    east = box(22.115, 37.0, 23.0, 39.0)  # cells from x index 12 (22.12) on
    shapes = gpd.GeoDataFrame(
        {"BIOME_NUM": [12.0, 4.0], "REALM": ["Palearctic", "Palearctic"]},
        geometry=[east, box(21.0, 37.0, 22.115, 39.0)],
        crs=4326,
    )
    path = tmp_path / "biomes.geojson"
    shapes.to_file(path)
    chosen = {"BIOME_NUM": 12.0, "REALM": "Palearctic"}
    inside = module(short, mask=str(path), mask_filter=chosen, split_years=SEASON)
    assert (inside.rows[:, 2] >= 12).all() and len(inside.rows)
    east_positives = short_dm.rows[(short_dm.samples.label == 1) & (short_dm.rows[:, 2] >= 12)]
    west_positives = short_dm.rows[(short_dm.samples.label == 1) & (short_dm.rows[:, 2] < 12)]
    assert len(west_positives) and len(east_positives)
    assert np.array_equal(inside.rows[inside.samples.label == 1], east_positives)


def test_the_simpler_strategies_stay_options(short: Path, short_dm) -> None:
    """buffer: uniform negatives (sea included), none within 3 days and 2 px of a positive."""
    dm = short_dm
    buffered = module(short, sampling="buffer", buffer_pixels=2, buffer_days=3, split_years=SEASON)
    positives = buffered.rows[buffered.samples.label == 1]
    negatives = buffered.rows[buffered.samples.label == 0]
    assert np.array_equal(positives, dm.rows[dm.samples.label == 1])
    gap = np.abs(negatives[:, None, :] - positives[None, :, :])
    assert not (gap <= [3, 2, 2]).all(axis=2).any()
    assert len(negatives) and not np.array_equal(negatives, dm.rows[dm.samples.label == 0])


def test_annual_layers_take_the_value_of_the_windows_year(cube: Path, dm) -> None:
    import xarray as xr

    ds = xr.open_zarr(cube, chunks=None)  # numpy reads: no dask graph of 913 day-chunks
    days = ds["time"].values.astype("datetime64[D]")
    column = TRACK_A_STATIC.index("population")
    for i in np.flatnonzero(dm.samples.label == 1)[:40]:
        t, y, x = dm.rows[i]
        year = str(days[t])[:4]
        held = "2019-04-01" if year == "2019" else f"{year}-01-01"
        expected = ds["population"].sel(time=held).values[y, x]
        assert dm.samples.static[i, column] == expected
    # a fire recorded on day t ignites on t+1: that is its label day
    t = dm.rows[np.flatnonzero(dm.samples.label == 1)[0], 0]
    assert str(days[t] + 1) in set(dm.label_days("train")) | set(dm.label_days("val"))


def test_splits_normalisation_and_window_mean_filling(dm) -> None:
    years = {
        s: set((dm.samples.day[i].astype("datetime64[Y]").astype(int) + 1970).tolist())
        for s, i in dm.splits.items()
    }
    assert years == {"train": {2019}, "val": {2020}, "test": {2021}}
    for index in dm.splits.values():
        labels = dm.samples.label[index]
        assert (labels == 0).sum() <= 2 * (labels == 1).sum()
    train = dm.tensors["train"]["dynamic"].numpy()
    assert np.isfinite(train).all()
    assert abs(train[..., 0, 0].mean()) < 0.3
    raw = dm.samples.dynamic[dm.splits["train"]]
    c = TRACK_A_DYNAMIC.index("lst_day")
    i, day = np.argwhere(np.isnan(raw[:, :, c]))[0]  # a cloud gap
    expected = (np.nanmean(raw[i, :, c]) - dm.mean[c]) / dm.std[c]
    assert np.isclose(train[i, day, c, 0, 0], expected, atol=1e-5)


def test_missing_values_take_the_window_mean_then_zero() -> None:
    from eofm.data.mesogeos_samples import standardise

    dynamic = np.array([[[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan]]], np.float32)  # (1, 3, 2)
    static = np.array([[np.nan, 4.0]], np.float32)
    d, s = standardise(dynamic, static, [1.0, 0.0, 0.0, 2.0], [2.0, 1.0, 1.0, 1.0])
    assert np.allclose(d[0, :, 0], [0.0, 1.0, 0.5]) and (d[0, :, 1] == 0).all()
    assert np.allclose(s, [[0.0, 2.0]])


def test_the_released_csvs_give_the_same_samples(dm, tmp_path: Path) -> None:
    folder = write_release_csv(dm, tmp_path / "track_a")
    from_csv = module(folder)
    for split in ("train", "val", "test"):
        for key in ("dynamic", "static", "doy", "label"):
            assert np.array_equal(
                from_csv.tensors[split][key].numpy(), dm.tensors[split][key].numpy()
            ), (split, key)
    assert from_csv.mean == dm.mean and from_csv.std == dm.std


def test_csv_rows_in_broken_samples_are_refused(dm, tmp_path: Path) -> None:
    folder = write_release_csv(dm, tmp_path / "broken")
    lines = (folder / "negatives.csv").read_text().splitlines()
    (folder / "negatives.csv").write_text("\n".join(lines[:40] + lines[45:]) + "\n")
    with pytest.raises(
        EofmError, match=r"negatives.csv has \d+ rows, not whole samples of 30 days: sample 1"
    ):
        module(folder)


def test_firecube_names_map_through_data_variables(short: Path, short_dm, tmp_path: Path) -> None:
    renamed = copy_cube(short, tmp_path / "firecube.zarr")
    names = {
        "t2m": "era5_max_t2m",
        "rh": "era5_min_rh",
        "population": "population_density",
        "slope": "dem_slope_radians",
    }
    for ours, theirs in names.items():
        (renamed / ours).rename(renamed / theirs)
    with pytest.raises(EofmError, match="no variable 'rh'"):
        module(renamed, split_years=SEASON)
    mapped = module(renamed, variables=names, split_years=SEASON)
    assert len(mapped.rows) and np.array_equal(mapped.rows, short_dm.rows)
    assert np.array_equal(
        mapped.tensors["test"]["dynamic"].numpy(), short_dm.tensors["test"]["dynamic"].numpy()
    )


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"without": "lai"}, "has no variable 'lai', a dynamic input"),
        ({"nan": "population"}, "population in .* is NaN everywhere on 2019-04-01"),
        ({"nan": "lai"}, "Variable 'lai' has no value in the training samples"),
    ],
)
def test_bad_cubes_name_the_variable(
    short: Path, tmp_path: Path, change: dict, needle: str
) -> None:
    broken = copy_cube(short, tmp_path / "bad.zarr", **change)
    with pytest.raises(EofmError, match=needle):
        module(broken, split_years=SEASON)


def test_a_split_year_without_positives_is_refused(dm, tmp_path: Path) -> None:
    folder = write_release_csv(dm, tmp_path / "csv")
    with pytest.raises(EofmError, match=r"data.split_years.test \[2030\] holds no positive"):
        module(folder, split_years={"train": [2019], "val": [2020], "test": [2030]})


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("no_ndvi", "has no variable 'ndvi', a dynamic input"),
        ("annual_nan", r"population in \S+ is NaN everywhere on 2019-04-01"),
        ("split_year", r"data.split_years.test \[2030\] holds no positive"),
        ("broken_csv", r"negatives.csv has \d+ rows, not whole samples of 30 days: sample 1"),
    ],
)
def test_bad_input_is_one_error_and_leaves_no_run_dir(
    dm, short: Path, short_dm, tmp_path: Path, capsys, bad: str, needle: str
) -> None:
    """Each bad input of Track A through ``eofm fit``: one error naming the variable, day,
    split year or sample, and no run dir."""
    import re

    extra: dict[str, object] = {}
    # the one-season cube's errors come before its samples are split by year
    if bad == "no_ndvi":
        root = copy_cube(short, tmp_path / "bad.zarr", without="ndvi")
    elif bad == "annual_nan":
        root = copy_cube(short, tmp_path / "bad.zarr", nan="population")
    elif bad == "split_year":  # the released samples of the three-year cube
        root = write_release_csv(dm, tmp_path / "csv")
        extra["data.split_years"] = "{train: [2019], val: [2020], test: [2030]}"
    else:
        root = write_release_csv(short_dm, tmp_path / "csv")
        lines = (root / "negatives.csv").read_text().splitlines()
        (root / "negatives.csv").write_text("\n".join(lines[:40] + lines[45:]) + "\n")
    run = tmp_path / "run"
    assert main(["fit", "mesogeos_track_a_lstm", *fit_args(root, run, **extra)]) == 1
    err = capsys.readouterr().err
    assert err.count("eofm: error:") == 1 and re.search(needle, err), err
    assert "Traceback" not in err and not run.exists()


@pytest.mark.parametrize("recipe", ["mesogeos_track_a_lstm", "mesogeos_track_a_transformer"])
def test_the_baseline_recipes_train_and_test(
    cube: Path, tmp_path: Path, recipe: str, request: pytest.FixtureRequest
) -> None:
    if recipe == "mesogeos_track_a_lstm":
        run = request.getfixturevalue("lstm_run")  # fitted as below, shared with the map test
    else:
        run = tmp_path / "run"
        assert main(["fit", recipe, *fit_args(cube, run)]) == 0
    assert main(["test", str(run)]) == 0
    record = json.loads((run / "test_metrics.json").read_text())
    assert {"test/AUPRC", "test/AUROC", "test/F1"} <= set(record["metrics"])
    assert all(d.startswith("2021") for d in record["test_days"])
    model = json.loads((run / "model.json").read_text())
    assert (
        model["inputs"]["dataset"] == "mesogeos"
        and model["decoder"]["name"] == recipe.rsplit("_", 1)[1]
    )


def test_the_danger_map_is_dated_by_the_fire_day(
    cube: Path, dm, lstm_run: Path, tmp_path: Path
) -> None:
    import rasterio
    import torch

    from eofm.families.restore import load_trained

    run = lstm_run
    test = dm.splits["test"]
    sample = int(test[np.flatnonzero(dm.samples.label[test] == 1)[0]])
    t, y, x = dm.rows[sample]
    fire_day = str(dm.samples.day[sample] + 1)
    out = tmp_path / "maps"
    args = ["predict", "--model", str(run), str(cube), "--out", str(out), "--date", fire_day]
    assert main(args) == 0
    with rasterio.open(out / f"danger_{fire_day}.tif") as tif:
        probs = tif.read(1)
        tags = tif.tags()
    assert tags["FIRE_DAY"] == fire_day and tags["CUBE_DAY"] == str(dm.samples.day[sample])
    trained = load_trained(str(run))
    trained.model.eval()
    from eofm.data.mesogeos_samples import standardise

    one = slice(sample, sample + 1)  # scored with the run's statistics (its seed drew others)
    d, s = standardise(
        dm.samples.dynamic[one],
        dm.samples.static[one],
        trained.manifest["mean"],
        trained.manifest["std"],
    )
    batch = {
        "dynamic": torch.from_numpy(d[..., None, None]),
        "static": torch.from_numpy(s[..., None, None]),
        "doy": dm.tensors["test"]["doy"][:1] * 0
        + float(np.datetime64(fire_day).astype(object).timetuple().tm_yday),
    }
    with torch.inference_mode():
        expected = torch.sigmoid(trained.model.predict_batch(batch) / trained.temperature)
    assert np.isclose(probs[y, x], float(expected), atol=1e-5)
    assert np.isnan(probs[-1, 0])  # the sea

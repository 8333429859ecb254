"""Nothing lost, round 2 (issue 33): no silent half-answers (overlapping splits, all-NaN
inputs, NaN in JSON), provenance (no local paths, random initialisation named everywhere)
and messages that say what happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from eofm.errors import EofmError
from tests.test_training import flood_root  # noqa: F401 - fixture reuse
from tests.test_weather import tiny_repo  # noqa: F401 - fixture reuse


def _overlapping_regions(path: Path) -> Path:
    """Two basins that overlap over the India chip (26.7N 93.8E), a third elsewhere."""
    import geopandas as gpd
    from shapely.geometry import box

    gpd.GeoDataFrame(
        {"basin": ["Brahmaputra", "Assam", "rest"]},
        geometry=[box(85, 20, 100, 30), box(90, 25, 95, 28), box(-180, -90, 60, 90)],
        crs=4326,
    ).to_file(path)
    return path


def test_overlapping_region_polygons_are_refused_unless_chosen(
    flood_root: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Item 3: a chip inside two regions used to go silently to the first one."""
    from eofm.data.sen1floods11 import Sen1Floods11DataModule

    regions = _overlapping_regions(tmp_path / "basins.geojson")

    def module(**extra: object) -> Sen1Floods11DataModule:
        split = {"by": "region", "regions": str(regions), "column": "basin"}
        split |= {"test": ["Assam"], "val": ["Brahmaputra"], "id_fraction": 0} | extra
        return Sen1Floods11DataModule(flood_root, ["VV", "VH"], mean=None, std=None, split=split)

    with pytest.raises(EofmError) as caught:
        module()
    message = str(caught.value)
    assert "'Brahmaputra' and 'Assam'" in message or "'Assam' and 'Brahmaputra'" in message
    assert "India_900498" in message and "data.split.overlap" in message
    with pytest.raises(EofmError, match=r"\['Assam', 'Brahmaputra'\] match no sample"):
        module(overlap="drop")  # the only chip of either is dropped: no split is left
    first = module(overlap="first", test=["Brahmaputra"], val=[])
    assert first.regions["India_900498"] == "Brahmaputra"  # listed first in the file
    assert first.splits["test"] == ["India_900498"]


def test_region_overlap_choice_is_typed() -> None:
    from eofm.data.regions import parse_region_split
    from eofm.errors import RecipeError

    split = {"by": "country", "test": ["India"], "overlap": "last"}
    with pytest.raises(RecipeError, match=r"data.split.overlap .* \['first', 'drop'\]"):
        parse_region_split(split, "recipe.yaml")
    assert parse_region_split(split | {"overlap": "drop"}, "r").overlap == "drop"


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    from tests.firecube import make_cube

    return make_cube(tmp_path_factory.mktemp("cube") / "mesogeos_cube.zarr")


def fire_args(root: Path, run: Path, **extra: object) -> list[str]:
    from tests.test_fire_danger import fit_args

    return ["fit", "mesogeos_fire_danger_gru", *fit_args(root, run, **extra)]


def test_overlapping_split_years_are_refused_before_anything(
    cube: Path, tmp_path: Path, capsys
) -> None:
    """Item 4: a year in two splits trained and scored the same samples."""
    from eofm.cli import main

    run = tmp_path / "run"
    years = "{train: [2019, 2020], val: [2020], test: [2021]}"
    assert main(fire_args(cube, run, **{"data.split_years": years})) == 2
    err = capsys.readouterr().err
    assert "data.split_years" in err and "2020 in both train and val" in err
    assert not run.exists()


def test_an_all_nan_input_variable_is_refused_by_name(cube: Path, tmp_path: Path, capsys) -> None:
    """Item 5: an all-NaN variable trained silently and wrote NaN into model.json."""
    import numpy as np
    import xarray as xr

    from eofm.cli import main

    broken = tmp_path / "broken.zarr"
    with xr.open_zarr(cube) as ds:
        ds = ds.load()
    ds["smi"] = ds["smi"] * np.float32(np.nan)
    ds.to_zarr(broken, mode="w")
    run = tmp_path / "run"
    assert main(fire_args(broken, run, **{"trainer.max_epochs": 1})) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("eofm: error:")]
    assert len(errors) == 1 and "['smi']" in errors[0] and "all NaN" in errors[0]
    assert not run.exists()


def test_no_json_file_eofm_writes_can_hold_nan(tmp_path: Path) -> None:
    """Item 5: json.dumps writes NaN and Infinity (not JSON) unless told not to."""
    import json

    from eofm.evaluation.scores import PixelScores, calibration_metrics
    from eofm.train.rundir import scalar, write_json

    target = tmp_path / "model.json"
    with pytest.raises(EofmError, match=r"nan at normalisation\.mean\[1\] of model\.json"):
        write_json(target, {"normalisation": {"mean": [0.5, float("nan")]}})
    with pytest.raises(EofmError, match=r"inf at t of model\.json"):
        write_json(target, {"t": float("inf")})
    assert not target.exists() and not list(tmp_path.iterdir())
    # values that may be missing are null, explicitly
    assert scalar(float("nan")) is None and scalar(float("-inf")) is None
    assert scalar(0.1234567) == 0.123457
    empty = calibration_metrics(PixelScores(2, (1.0,)))
    write_json(target, {"metrics": {"val/loss": scalar(float("nan"))}, "calibration": empty})
    assert json.loads(target.read_text()) == {
        "metrics": {"val/loss": None},
        "calibration": {"ECE": None, "NLL": None, "Brier": None},
    }


def test_every_json_file_goes_through_the_strict_writer() -> None:
    """No json.dump / json.dumps in eofm but the one in eofm/jsonfile.py."""
    import ast

    import eofm

    package = Path(eofm.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "jsonfile.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("dump", "dumps")
                and isinstance(node.value, ast.Name)
                and node.value.id == "json"
            ):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not offenders, offenders


@pytest.fixture(scope="module")
def random_run(tmp_path_factory) -> Path:
    """A run dir whose Prithvi-tiny backbone was randomly initialised (no training)."""
    from tests.runs import make_run_dir

    return make_run_dir(
        tmp_path_factory.mktemp("random") / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0]
    )


def _png(path: Path, seed: int) -> Path:
    import numpy as np
    from matplotlib.image import imsave

    imsave(path, np.random.default_rng(seed).random((160, 160)))
    return path


def test_report_names_no_local_path_and_follows_no_symlink_out(
    random_run: Path, tmp_path: Path
) -> None:
    """Provenance: report.html embedded the run dir, data.root and a symlinked picture."""
    import json
    import shutil

    import yaml

    from eofm.commands.report import render

    run = tmp_path / "private-user" / "run"
    shutil.copytree(random_run, run)
    data_root = tmp_path / "private-user" / "data" / "sen1floods11"
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["data"]["root"] = str(data_root)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (run / "test_metrics.json").write_text(
        json.dumps(
            {"data_root": str(data_root), "checkpoint": "checkpoints/best.ckpt", "metrics": {}}
        )
    )
    secret = _png(tmp_path / "secret.png", 0)
    (run / "curves.png").symlink_to(secret)  # a picture from outside the run dir
    _png(run / "confusion.png", 1)
    text = render(run)
    assert str(tmp_path) not in text and "private-user" not in text
    assert "../data/sen1floods11" in text  # data.root, relative to the run dir
    assert text.count("<img") == 1  # the confusion matrix only
    assert "curves.png" in text and "symlinks pointing out of the run dir" in text
    assert "random initialisation" in text and 'class="warning"' in text


def test_random_initialisation_is_named_by_test_predict_and_the_card(
    random_run: Path,
    flood_root: Path,  # noqa: F811
    tmp_path: Path,
    capsys,
) -> None:
    """Provenance: a random-init model must say so wherever it is described."""
    import json
    import shutil

    import rasterio

    from eofm.cli import main
    from eofm.publishing.provenance import RANDOM_INIT_ATTRIBUTE
    from tests.realdata import SHARED

    run = tmp_path / "run"
    shutil.copytree(random_run, run)
    data = [f"data.root={flood_root}", "data.split_csv=null", "data.eval_crop_size=32"]
    assert main(["test", str(run), *data]) == 0
    out = capsys.readouterr().out
    assert "WARNING: this model's backbone (prithvi_eo_v2_tiny_tl) was trained from random" in out
    assert "random initialisation" in json.loads((run / "test_metrics.json").read_text())["warning"]
    scene = SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif"
    args = ["predict", "--model", str(run), str(scene), "--no-progress", "--out"]
    assert main([*args, str(tmp_path / "classes")]) == 0  # streamed tile by tile otherwise
    assert main([*args, str(tmp_path / "probabilities"), "--probabilities"]) == 0
    written = sorted((tmp_path / "classes").glob("*.tif"))
    written += sorted((tmp_path / "probabilities").glob("*_probabilities.tif"))
    assert len(written) == 2
    for path in written:  # the class map, and the probabilities beside one
        kind = path.name
        with rasterio.open(path) as ds:
            assert "random initialisation" in ds.tags()[RANDOM_INIT_ATTRIBUTE], kind
            assert ds.profile["tiled"] and ds.overviews(1), kind  # still a COG
    bundle = tmp_path / "bundle"
    assert main(["publish", str(run), "--repo", "tester/x", "--dry-run", str(bundle)]) == 0
    card = (bundle / "README.md").read_text()
    title = card.index("\n# ")
    assert card.index("> **Warning**: This model's backbone", title) < card.index("## Model")


def test_a_random_init_weather_run_never_claims_its_backbones_commit(
    tmp_path: Path,
    tiny_repo,  # noqa: F811
) -> None:
    """Provenance: the weather card and the NetCDF ``source`` said ``repo@sha``."""
    import json

    import xarray as xr

    from eofm.cli import main
    from eofm.commands.fit import fit
    from eofm.publishing.provenance import RANDOM_INIT_ATTRIBUTE
    from eofm.recipe import load_recipe
    from tests.weather import copy_era5, regression_recipe

    era5 = copy_era5(tmp_path / "era5")
    recipe = regression_recipe(
        era5,
        "hydrology",
        cache={"mode": "off"},
        backbone={"pretrained": False},
        trainer={"max_epochs": 1},
    )
    run = fit(load_recipe(recipe), tmp_path / "run")
    manifest = json.loads((run / "model.json").read_text())
    assert manifest["backbone"]["pretrained_loaded"] is False
    claim = f"{manifest['backbone']['repo']}@{manifest['backbone']['revision']}"
    out = tmp_path / "out"
    assert (
        main(["predict", "--model", str(run), str(era5), "--out", str(out), "--no-progress"]) == 0
    )
    (path,) = out.glob("*.nc")
    with xr.open_dataset(path) as ds:
        assert claim not in json.dumps(ds.attrs, default=str)
        assert (
            "random initialisation" in ds.attrs["source"]
            and ds.attrs["backbone_revision"] == "none"
        )
        assert "random initialisation" in ds.attrs[RANDOM_INIT_ATTRIBUTE]
    bundle = tmp_path / "bundle"
    assert main(["publish", str(run), "--repo", "tester/h", "--dry-run", str(bundle)]) == 0
    card = (bundle / "README.md").read_text()
    assert "at revision" not in card and "random initialisation" in card
    assert card.index("> **Warning**: This model's backbone") < card.index("## Model")


def test_a_pickle_under_a_matching_checksum_is_one_line(
    random_run: Path, tmp_path: Path, hub, capsys
) -> None:
    """Provenance: a pickle published with its own SHA-256 gave a SafetensorError traceback."""
    import hashlib
    import io
    import json

    import torch

    from eofm.cli import main
    from tests.realdata import SHARED

    bundle = tmp_path / "bundle"
    assert main(["publish", str(random_run), "--repo", "tester/p", "--dry-run", str(bundle)]) == 0
    files = {p.name: p.read_bytes() for p in bundle.iterdir()}
    config = json.loads(files["config.json"])
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(2)}}, buffer)
    files[config["weights"]] = buffer.getvalue()
    config["weights_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    files["config.json"] = json.dumps(config).encode()
    sha = hub.add_commit("tester/pickled", files)
    capsys.readouterr()
    scene = SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif"
    args = ["--model", f"hf://tester/pickled@{sha}", str(scene), "--out", str(tmp_path / "out")]
    assert main(["predict", *args, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "SafetensorError" in err
    errors = [line for line in err.splitlines() if line.startswith("eofm: error:")]
    assert len(errors) == 1 and "safetensors only" in errors[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


class _Payload:
    """Not a tensor: torch's weights-only reader refuses it."""


def test_pt_errors_do_not_advise_loading_with_weights_only_false(tmp_path: Path) -> None:
    import torch

    from eofm.backbones._weights import read_state_dict

    path = tmp_path / "model.pt"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(EofmError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert "weights_only" not in message and "can still be loaded" not in message
    assert "\n" not in message
    assert "Python objects besides tensors" in message and str(path) in message


def test_calibration_says_when_it_hits_a_bound_or_has_too_little_data() -> None:
    """Misleading messages: T stopped at 54.6 (a bound) silently; one chip gave T = 0.04."""
    import numpy as np

    from eofm.evaluation.calibration import calibration_record

    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 4000)
    noise = rng.normal(0, 20, (4000, 2)).astype(np.float32)  # unrelated to the labels
    record = calibration_record(noise, target, "val", units=5, unit="chips")
    assert record["temperature"] == pytest.approx(np.exp(4.0), rel=1e-2)
    assert "upper bound" in record["warning"] and record["chips"] == 5
    assert record["warning"].startswith("The temperature stopped")
    honest = np.stack([np.zeros(4000), np.where(target == 1, 1.0, -1.0)], axis=1)
    assert "warning" not in calibration_record(honest, target, "val", units=5, unit="chips")
    one_chip = calibration_record(honest, target, "val", units=1, unit="chips")
    assert "val split has 1 chips, fewer than the 2" in one_chip["warning"]
    few = calibration_record(honest, target, "val", units=12, unit="samples")
    assert "fewer than the 50" in few["warning"]
    with pytest.raises(EofmError, match=r"no chips") as caught:
        calibration_record(honest, target, "val", units=0, unit="chips")
    assert caught.value.exit_code == 2
    one_class = calibration_record(honest, np.zeros(4000, np.int64), "val", units=5, unit="chips")
    assert "hold class 0 only" in one_class["warning"]


def test_report_output_may_be_a_folder(random_run: Path, tmp_path: Path, capsys) -> None:
    """Misleading messages: ``report --output DIR`` named a temporary file."""
    from eofm.cli import main

    folder = tmp_path / "reports"
    folder.mkdir()
    assert main(["report", str(random_run), "--output", str(folder)]) == 0
    assert [p.name for p in folder.iterdir()] == ["report.html"]
    assert str(folder / "report.html") in capsys.readouterr().out


def test_an_inverted_time_range_is_named_as_such(capsys) -> None:
    """Misleading messages: --start after --end was reported as "outside the data"."""
    import subprocess
    import sys

    args = ["predict", "--model", "no-such-run", "era5", "--out", "o"]
    args += ["--start", "2020-01-02", "--end", "2020-01-01"]
    code = "import sys; from eofm.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args], capture_output=True, text=True
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("eofm: error:")]
    assert errors == [
        "eofm: error: --start 2020-01-02 is after --end 2020-01-01: give the earlier time first."
    ]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "numpy" in imported and "torch" not in imported  # refused before anything heavy


def test_a_missing_era5_variable_is_exit_2(tmp_path: Path) -> None:
    """Misleading messages: the README promises exit 2; it was 1."""
    from eofm.data.era5 import open_source
    from tests.test_weather import spec
    from tests.weather import copy_era5

    root = copy_era5(tmp_path / "era5")
    (root / "ERA5_2020-01-01_pl_q.nc").unlink()
    with pytest.raises(EofmError, match=r"q \(atmos\) are missing") as caught:
        open_source(root, spec())
    assert caught.value.exit_code == 2


def test_climatology_creates_its_folder(
    tmp_path: Path,
    tiny_repo,  # noqa: F811
    capsys,
) -> None:
    """Misleading messages: a missing parent folder was reported as "Permission denied"."""
    import xarray as xr
    import yaml

    from eofm.cli import main
    from tests.weather import copy_era5, regression_recipe

    recipe = tmp_path / "recipe.yaml"
    era5 = copy_era5(tmp_path / "era5")
    recipe.write_text(yaml.safe_dump(regression_recipe(era5, "acc", cache={"mode": "off"})))
    target = tmp_path / "new" / "deeper" / "climatology.nc"
    assert main(["climatology", str(recipe), "--out", str(target)]) == 0
    with xr.open_dataset(target) as ds:
        assert set(ds.data_vars) == {"tp", "e"}
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["climatology", str(recipe), "--out", str(blocked / "sub" / "c.nc")]) == 2
    err = capsys.readouterr().err
    assert f"Cannot create the folder {blocked / 'sub'} for the climatology" in err


def test_each_log_line_is_printed_once_and_never_empty() -> None:
    """Misleading messages: ``INFO eofm:`` and ``INFO:eofm.…`` (two handlers) printed the
    same line twice once a library logged through the root logger (absl, a module-level
    ``logging.warning``), and a message opening with a newline gave an empty line."""
    import subprocess
    import sys

    script = """
import logging
from eofm.cli import main
main(["recipes"])  # sets up eofm's logging, as every command does
logging.warning("a library logs through the root")  # basicConfig() unless a root handler
logging.getLogger("eofm.data.chips").info("read 3 chips")
logging.getLogger("eofm.backbones.fetch").warning("\\n!!!!\\n!! RANDOM WEIGHTS\\n!!!!")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines.count("INFO eofm: read 3 chips") == 1
    assert not [
        line for line in lines if "read 3 chips" in line and line != "INFO eofm: read 3 chips"
    ]
    assert "WARNING eofm: !! RANDOM WEIGHTS" in lines
    assert not [line for line in lines if not line.split(":", 1)[-1].strip()], lines
    assert "WARNING root: a library logs through the root" in lines


def test_a_random_init_class_map_carries_the_tag_through_the_cog_copy(tmp_path: Path) -> None:
    """The random-initialisation tag, set on the staged GeoTIFF, survives GDAL's COG copy."""
    import rasterio

    from eofm.predict.engine import Predictor
    from eofm.predict.options import PredictOptions
    from eofm.publishing.provenance import RANDOM_INIT_ATTRIBUTE
    from tests.test_predict_pipeline import LANDSAT, crop, trained_for

    path = crop(LANDSAT, tmp_path / "scene.tif", 0, 0, 300, 260)
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    trained.manifest = {"backbone": {"name": "tiny", "pretrained_loaded": False}}
    options = PredictOptions(tile=128, overlap=16, batch_size=16, quicklook=False)
    predictor = Predictor(trained, options)
    cog = predictor.predict(path, tmp_path / "out").outputs[0]
    predictor.wait()
    with rasterio.open(cog) as ds:
        assert "random initialisation" in ds.tags()[RANDOM_INIT_ATTRIBUTE]
        assert ds.profile["tiled"] and ds.driver == "GTiff"

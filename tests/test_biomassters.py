"""BioMassters (issue 36, item 2) through torchgeo's ``BioMassters``: the generated release
is read by torchgeo's own class (layout drift fails here), then fitted, tested and
predicted end to end with a tiny random-init backbone; a missing file is one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eofm.cli import main
from eofm.data.biomassters_config import BIOMASSTERS_BANDS, METADATA_FILE, S2_FILE_BANDS
from tests.biomassters import NO_S2, SIZE, TRAIN_CHIPS, make_biomassters
from tests.test_pixel_regression import tiny as tiny_pairs

RECIPE = "biomassters_prithvi_v2_300_tl_lora"


def tiny(root: Path) -> list[str]:
    """The shipped recipe on a tiny random-init backbone, one epoch on the CPU."""
    return [a for a in tiny_pairs(root) if not a.startswith("data.crop_size=")]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_biomassters(tmp_path_factory.mktemp("biomassters"))


def test_the_fixture_is_the_release_layout_that_torchgeo_reads(root: Path) -> None:
    from torchgeo.datasets import BioMassters

    assert METADATA_FILE == BioMassters.metadata_filename
    both = BioMassters(str(root), split="train", sensors=["S1", "S2"])
    assert len(both) == 2 * len(TRAIN_CHIPS) - len(NO_S2)  # months with both sensors
    sample = both[0]
    assert tuple(sample["image_S1"].shape) == (4, SIZE, SIZE)
    assert tuple(sample["image_S2"].shape) == (11, SIZE, SIZE)
    assert tuple(sample["label"].shape) == (1, SIZE, SIZE)
    assert len(BioMassters(str(root), split="train", sensors=["S1"])) == 2 * len(TRAIN_CHIPS)
    assert "label" not in BioMassters(str(root), split="test")[0]  # no target for test
    assert BIOMASSTERS_BANDS[2:] == S2_FILE_BANDS and len(S2_FILE_BANDS) == 10


def test_fit_test_and_predict_biomass(root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["fit", RECIPE, *tiny(root), "--run-dir", str(run)]) == 0
    model = json.loads((run / "model.json").read_text())
    assert model["task"]["class_names"] == ["agb"] and model["task"]["units"] == "Mg/ha"
    assert model["bands"][:2] == ["VV", "VH"]
    assert model["normalisation_source"].startswith("training-split")
    assert main(["test", str(run)]) == 0
    record = json.loads((run / "test_metrics.json").read_text())
    assert {"test/RMSE", "test/MAE", "test/R2", "test/bias"} <= set(record["metrics"])
    assert record["test_chips"] and set(record["test_chips"]) <= set(TRAIN_CHIPS)
    assert record["density"]["pixels"] > 0 and (run / "pred_vs_obs.png").is_file()

    chip = record["test_chips"][0]  # one month of the chip stacked in the model's bands
    with rasterio.open(root / "train_features" / f"{chip}_S1_00.tif") as src:
        s1, profile = src.read(), src.profile
    with rasterio.open(root / "train_features" / f"{chip}_S2_00.tif") as src:
        s2 = src.read().astype(np.float32)
    stack = np.concatenate([s1[:2], s2[:10]])
    picked = stack[[BIOMASSTERS_BANDS.index(b) for b in model["bands"]]]
    scene = tmp_path / "scene.tif"
    profile.update(count=len(picked), dtype="float32", nodata=-9999.0)
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(picked)
    out = tmp_path / "out"
    argv = ["predict", "--model", str(run), str(scene), "--out", str(out), "--tile", "32"]
    assert main([*argv, "--overlap", "0"]) == 0
    with rasterio.open(out / "scene.tif") as cog:
        values = cog.read(1)
        assert cog.dtypes[0] == "float32" and cog.descriptions[0] == "agb"
    assert np.isnan(values[0, 0]) and np.isfinite(values.ravel()[1:]).all()  # S1 -9999


@pytest.mark.parametrize(
    "missing", ["train_features/000aa810_S2_00.tif", "train_agbm/0003d2eb_agbm.tif"]
)
def test_a_missing_file_is_one_error_naming_it(
    root: Path, tmp_path: Path, missing: str, capsys
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    (copy / missing).unlink()
    argv = ["fit", RECIPE, *tiny(copy), "--run-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert Path(missing).name in err and err.count("eofm: error:") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("bands", "orbit", "samples"),
    [
        (["VV", "VH"], "descending", 2 * len(TRAIN_CHIPS)),  # S1 alone: every month
        (["RED", "NIR_BROAD"], "ascending", 2 * len(TRAIN_CHIPS) - len(NO_S2)),
    ],
)
def test_samples_stack_the_bands_the_recipe_names(
    root: Path, bands: list[str], orbit: str, samples: int
) -> None:
    """Each sample holds data.bands read from the month's files as float32 (S1's VV and
    VH of data.s1_orbit: file bands 3 and 4 for the descending orbit)."""
    from eofm.data.biomassters import BioMasstersDataModule

    module = BioMasstersDataModule(
        root, bands=bands, s1_orbit=orbit, mean=[0.0] * 2, std=[1.0] * 2, hflip=False
    )
    assert sum(len(v) for v in module.indexes.values()) == samples
    dataset = module.dataset("train")
    image, valid, _, chip = dataset.raw(0)
    month = int(
        module.source.df[module.source.df["num_index"] == module.indexes["train"][0]][
            "num_month"
        ].iloc[0]
    )
    sensor, file_bands = ("S1", [3, 4]) if bands[0] == "VV" else ("S2", [3, 7])
    with rasterio.open(root / "train_features" / f"{chip}_{sensor}_{month:02d}.tif") as src:
        expected = src.read(file_bands).astype(np.float32)
    assert image.dtype.is_floating_point and np.array_equal(image.numpy(), expected)
    assert bool(valid[0, 0]) is (sensor == "S2")  # S1's -9999 is not valid

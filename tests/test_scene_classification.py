"""Scene classification (issue 36, item 1): EuroSAT MS chips through torchgeo's ``EuroSAT``,
fitted, tested and predicted end to end with a tiny random-init backbone; the fixture's
layout is checked against torchgeo's own class; bad chips and labels are one clear error."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eofm.cli import main
from eofm.data.eurosat_config import (
    EUROSAT_BANDS,
    EUROSAT_CLASSES,
    EUROSAT_FILE_CODES,
    EUROSAT_IMAGE_DIR,
    EUROSAT_SPLIT_FILES,
)
from eofm.errors import EofmError, RecipeError
from eofm.recipe import load_recipe
from tests.eurosat import PER_SPLIT, make_eurosat, write_chip

RECIPE = "eurosat_prithvi_v2_300_tl_lora"


def tiny(root: Path, **extra: object) -> list[str]:
    """The shipped recipe on a tiny random-init backbone, one epoch on the CPU."""
    values = {
        "data.root": str(root),
        "backbone.name": "prithvi_eo_v2_tiny_tl",
        "backbone.pretrained": "false",
        "adapter.rank": 4,
        "decoder.channels": 16,
        "data.batch_size": 8,
        "data.num_workers": 0,
        "optimizer.warmup_steps": 0,
        "trainer.max_epochs": 1,
        "trainer.accelerator": "cpu",
        "trainer.precision": "32-true",
        "trainer.enable_progress_bar": "false",
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory) -> Path:
    return make_eurosat(tmp_path_factory.mktemp("eurosat"))


@pytest.fixture(scope="module")
def run(eurosat_root: Path, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "eurosat"
    assert main(["fit", RECIPE, *tiny(eurosat_root), "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_the_fixture_is_the_release_layout_that_torchgeo_reads(eurosat_root: Path) -> None:
    """torchgeo's own ``EuroSAT`` reads the generated release: if its layout (folders,
    split lists, band order, chip size) drifts from what eofm writes and checks, this fails."""
    from torchgeo.datasets import EuroSAT, EuroSATSpatial

    assert EUROSAT_FILE_CODES == tuple(EuroSAT.all_band_names)
    assert EUROSAT_IMAGE_DIR == Path(EuroSAT.base_dir)
    assert EUROSAT_SPLIT_FILES["official"] == EuroSAT.split_filenames
    assert EUROSAT_SPLIT_FILES["spatial"] == EuroSATSpatial.split_filenames
    for split, count in PER_SPLIT.items():
        chips = EuroSAT(str(eurosat_root), split=split)
        assert chips.classes == list(EUROSAT_CLASSES)
        assert len(chips) == count * len(EUROSAT_CLASSES)
        sample = chips[0]
        assert tuple(sample["image"].shape) == (13, 64, 64)
    assert EUROSAT_BANDS[7:9] == ("NIR_BROAD", "WATER_VAPOR")  # B08, B09
    assert EUROSAT_BANDS[-1] == "NIR_NARROW"  # B8A is the 13th band of a chip


def test_fit_test_and_predict_a_folder_of_chips(
    run: Path, eurosat_root: Path, tmp_path: Path, capsys
) -> None:
    model = json.loads((run / "model.json").read_text())
    assert model["task"]["type"] == "scene_classification"
    assert model["bands"] == list(EUROSAT_BANDS)
    assert model["inputs"]["chip_size"] == [64, 64]
    assert model["normalisation_source"].startswith("torchgeo EuroSATDataModule")
    assert model["backbone"]["pretrained_loaded"] is False
    assert (run / "adapter" / "adapter_model.safetensors").is_file()  # LoRA through peft
    val = json.loads((run / "metrics.json").read_text())["metrics"]
    assert 0 <= val["val/accuracy"] <= 1 and "val/F1_SeaLake" in val

    assert main(["test", str(run)]) == 0
    record = json.loads((run / "test_metrics.json").read_text())
    metrics = record["metrics"]
    assert set(metrics) >= {"test/accuracy", "test/mF1", *(f"test/F1_{c}" for c in EUROSAT_CLASSES)}
    confusion = np.array(record["confusion"]["truth_by_predicted"])
    assert confusion.shape == (10, 10)
    assert confusion.sum(axis=1).tolist() == [PER_SPLIT["test"]] * 10  # every test chip once
    assert np.trace(confusion) / confusion.sum() == pytest.approx(metrics["test/accuracy"])
    assert (run / "confusion.png").stat().st_size > 0
    assert len(record["test_chips"]) == 10

    folder = eurosat_root / EUROSAT_IMAGE_DIR / "Forest"
    out = tmp_path / "out"
    argv = ["predict", "--model", str(run), str(folder), "--out", str(out), "--probabilities"]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [Path(r["file"]).name for r in rows] == [f"Forest_{n}.tif" for n in range(1, 5)]
    for row in rows:
        top = [float(row[f"probability_{i}"]) for i in (1, 2, 3)]
        assert top == sorted(top, reverse=True)
        every = {c: float(row[f"probability_{c}"]) for c in EUROSAT_CLASSES}
        assert sum(every.values()) == pytest.approx(1, abs=1e-4)
        assert every[row["label_1"]] == pytest.approx(top[0])
        assert row["eofm_backbone_weights"].startswith("random initialisation")

    capsys.readouterr()  # nothing a user made is overwritten without --overwrite
    before = (out / "predictions.csv").read_bytes()
    assert main(["predict", "--model", str(run), str(folder), "--out", str(out)]) == 2
    assert "predictions.csv exists" in capsys.readouterr().err
    assert (out / "predictions.csv").read_bytes() == before


def test_a_scene_gets_a_sliding_window_label_map(
    run: Path, eurosat_root: Path, tmp_path: Path
) -> None:
    """A scene tiled from 2 x 3 chips: with --overlap 0 each cell of the COG is the label
    the chip alone gets in predictions.csv; with --overlap 32 the cells are 32 px."""
    import rasterio

    images = eurosat_root / EUROSAT_IMAGE_DIR
    names = ["Forest_1", "River_2", "SeaLake_3", "Highway_1", "Pasture_2", "Industrial_3"]
    chips = [images / n.split("_")[0] / f"{n}.tif" for n in names]
    with rasterio.open(chips[0]) as src:
        profile, tiles = src.profile, [rasterio.open(c).read() for c in chips]
    mosaic = np.concatenate(
        [np.concatenate(tiles[:3], axis=2), np.concatenate(tiles[3:], axis=2)], axis=1
    )
    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", **(profile | {"height": 128, "width": 192})) as dst:
        dst.write(mosaic)

    out = tmp_path / "out"
    argv = ["predict", "--model", str(run), str(scene), *map(str, chips), "--out", str(out)]
    assert main([*argv, "--overlap", "0"]) == 0
    label = {
        Path(r["file"]).stem: r["label_1"] for r in csv.DictReader((out / "predictions.csv").open())
    }
    with rasterio.open(out / "scene_labels.tif") as src:
        assert src.tags()["eofm_classes"].split(",") == list(EUROSAT_CLASSES)
        assert src.tags()["eofm_backbone_weights"].startswith("random initialisation")
        assert (src.height, src.width) == (2, 3) and src.transform.a == 64 * profile["transform"].a
        cells = src.read(1)
    assert [EUROSAT_CLASSES[v] for v in cells.ravel()] == [label[n] for n in names]

    assert main([*argv, "--overlap", "32", "--overwrite"]) == 0
    with rasterio.open(out / "scene_labels.tif") as src:
        assert (src.height, src.width) == (4, 6) and src.transform.a == 32 * profile["transform"].a
        assert src.read(1).max() < 10
    assert main([*argv, "--overlap", "40", "--overwrite"]) == 2  # 24 px steps: 64 % 24 != 0


CHILD = r"""
import contextlib, io, json, sys
from eofm.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    rc = main(json.loads(sys.argv[1]))
heavy = [m for m in ("torch", "lightning", "peft", "torchgeo") if m in sys.modules]
print(json.dumps({"rc": rc, "stderr": err.getvalue(), "heavy": heavy}))
"""


def _child(argv: list[str]) -> dict:
    """``eofm.cli.main(argv)`` in a fresh process: its exit code, stderr and heavy imports."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argv)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_a_chip_with_the_wrong_band_count_is_one_error_naming_it(run: Path, tmp_path: Path) -> None:
    chips = tmp_path / "chips"
    write_chip(chips / "a_good.tif", np.full((13, 64, 64), 1000))
    write_chip(chips / "b_twelve.tif", np.full((12, 64, 64), 1000))
    out = tmp_path / "out"
    result = _child(["predict", "--model", str(run), str(chips), "--out", str(out)])
    assert result["rc"] == 2, result
    assert f"{chips / 'b_twelve.tif'}: 12 bands" in result["stderr"]
    assert result["stderr"].count("error:") == 1
    assert result["heavy"] == []  # found from the header, before torch and the model
    assert not out.exists()

    from eofm.data.eurosat import EuroSATDataModule  # in training data too

    root = make_eurosat(tmp_path / "eurosat", per_split={"train": 1, "val": 1, "test": 1})
    bad = root / EUROSAT_IMAGE_DIR / "River" / "River_1.tif"
    write_chip(bad, np.full((12, 64, 64), 1000))
    train = EuroSATDataModule(str(root)).dataset("train")
    index = [Path(p).name for p, _ in train.chips.samples].index("River_1.tif")
    with pytest.raises(EofmError, match=f"{bad}: 12 bands; a EuroSAT MS chip holds 13"):
        train[index]


def test_a_label_outside_the_class_list_is_one_error_naming_it(tmp_path: Path) -> None:
    root = make_eurosat(tmp_path / "eurosat", per_split={"train": 1, "val": 1, "test": 1})
    write_chip(root / EUROSAT_IMAGE_DIR / "Glacier" / "Glacier_1.tif", np.full((13, 64, 64), 9))
    run_dir = tmp_path / "run"
    result = _child(["fit", RECIPE, *tiny(root), "--run-dir", str(run_dir)])
    assert result["rc"] == 2, result
    assert f"{root / EUROSAT_IMAGE_DIR / 'Glacier'}: label 'Glacier'" in result["stderr"]
    assert "outside the class list task.class_names" in result["stderr"]
    assert result["heavy"] == [] and not run_dir.exists()
    # a class of the list with no folder, and the list in another order than the labels
    (root / EUROSAT_IMAGE_DIR / "Glacier" / "Glacier_1.tif").unlink()
    (root / EUROSAT_IMAGE_DIR / "Glacier").rmdir()
    names = [*EUROSAT_CLASSES, "Glacier"]
    result = _child(["fit", RECIPE, *tiny(root), f"task.class_names=[{','.join(names)}]"])
    assert "names ['Glacier'], which have no class folder" in result["stderr"]
    swapped = [EUROSAT_CLASSES[1], EUROSAT_CLASSES[0], *EUROSAT_CLASSES[2:]]
    result = _child(["fit", RECIPE, *tiny(root), f"task.class_names=[{','.join(swapped)}]"])
    assert "in label order" in result["stderr"] and result["rc"] == 2


def test_the_recipe_is_checked_for_the_family() -> None:
    with pytest.raises(RecipeError, match=r"pooled_linear', 'pooled_mlp"):
        load_recipe(RECIPE, ["decoder.name=progressive"])
    with pytest.raises(RecipeError, match="use data.name: eurosat"):
        load_recipe(
            {
                "task": {"definition": "eurosat_land_cover"},
                "decoder": {"name": "pooled_linear"},
                "data": {"name": "sen1floods11"},
            }
        )
    with pytest.raises(RecipeError, match="task.top_k"):
        load_recipe(RECIPE, ["task.top_k=0"])
    with pytest.raises(RecipeError, match="val/F1_SeaLake"):
        load_recipe(RECIPE, ["task.monitor=val/F1_Sealake"])
    fire = load_recipe("mesogeos_track_a_lstm")  # the datacube family stays as it was
    assert fire.task.type == "classification"


# --- multi-label: BigEarthNet v2 (reBEN) --------------------------------------------------
BEN_RECIPE = "bigearthnet_s2_prithvi_v2_300_tl_lora"


@pytest.fixture(scope="module")
def ben_root(tmp_path_factory) -> Path:
    from eofm.data.bigearthnet import BEN_CLASSES
    from tests.bigearthnet import make_bigearthnet

    return make_bigearthnet(tmp_path_factory.mktemp("reben"), list(BEN_CLASSES))


def test_the_bigearthnet_fixture_is_the_release_layout_that_torchgeo_reads(ben_root: Path) -> None:
    from torchgeo.datasets import BigEarthNetV2
    from torchgeo.datasets.utils import sort_sentinel2_bands

    from eofm.data.bigearthnet import BEN_CLASSES
    from eofm.data.bigearthnet_config import BEN_PARTS, BEN_S2_CODES

    assert BEN_PARTS == tuple(BigEarthNetV2.dir_file_names.values())
    assert list(BEN_CLASSES) == load_recipe(BEN_RECIPE).task.class_names
    assert list(BEN_S2_CODES) == sorted(BEN_S2_CODES, key=lambda c: sort_sentinel2_bands(f"x_{c}"))
    for split, count in (("train", 8), ("val", 4), ("test", 4)):  # metadata says "validation"
        patches = BigEarthNetV2(str(ben_root), split=split, bands="all")
        assert len(patches) == count
        sample = patches[0]
        assert tuple(sample["image_s2"].shape) == (12, 120, 120)  # 20, 60 px bands resampled
        assert tuple(sample["image_s1"].shape) == (2, 120, 120)
        assert 1 <= int(sample["label"].sum()) <= 3


def test_multilabel_fit_test_and_predict_with_the_threshold_kept(
    ben_root: Path, tmp_path: Path
) -> None:
    import torch

    run = tmp_path / "run"
    argv = ["fit", BEN_RECIPE, *tiny(ben_root, **{"data.batch_size": 4}), "--run-dir", str(run)]
    assert main(argv) == 0
    model = json.loads((run / "model.json").read_text())
    assert model["task"]["multilabel"] is True and model["inputs"]["chip_size"] == [120, 120]
    assert model["normalisation_source"].startswith("torchgeo")
    assert main(["test", str(run)]) == 0
    record = json.loads((run / "test_metrics.json").read_text())
    metrics = record["metrics"]
    for key in ("mAP_micro", "mAP_macro", "F1_micro", "F1_macro"):
        assert 0 <= metrics[f"test/{key}"] <= 1, key
    state = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    threshold = float(state["model.threshold"])  # chosen on val, kept with the model
    assert 0.05 <= threshold <= 0.95 and metrics["test/threshold"] == pytest.approx(threshold)
    assert record["threshold"] == pytest.approx(threshold)
    assert len(record["average_precision"]) == 19

    out = tmp_path / "out"
    tile = ben_root / "BigEarthNet-S2"
    assert (
        main(["predict", "--model", str(run), str(tile), "--out", str(out), "--probabilities"]) == 0
    )
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 16
    names = load_recipe(BEN_RECIPE).task.class_names
    for row in rows:
        given = [c for c in names if float(row[f"probability_{c}"]) >= threshold - 1e-6]
        assert row["labels"].split(";") == given or (row["labels"] == "" and not given)
        top = [float(row[f"probability_{i}"]) for i in range(1, 6)]
        assert top == sorted(top, reverse=True)


def test_bigearthnet_bad_patches_are_one_error_naming_them(ben_root: Path, tmp_path: Path) -> None:
    import shutil

    import pandas as pd

    from eofm.data.bigearthnet import BigEarthNetDataModule

    root = tmp_path / "reben"
    shutil.copytree(ben_root, root)
    meta = pd.read_parquet(root / "metadata.parquet")
    patch = meta["patch_id"][0]
    folder = root / "BigEarthNet-S2" / patch.rsplit("_", 2)[0] / patch
    (folder / f"{patch}_B8A.tif").unlink()
    chips = tmp_path / "chips"
    shutil.copytree(folder, chips / patch)
    # predict: from the file names, before torch (a run dir is not even needed to be real)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"")
    recipe = load_recipe(BEN_RECIPE, [f"data.root={root}"])
    from eofm.recipe import dump_recipe

    (run / "recipe.yaml").write_text(dump_recipe(recipe))
    manifest = {
        "task": {"type": "scene_classification", "class_names": recipe.task.class_names},
        "bands": recipe.data.bands, "mean": [0.0] * 12, "std": [1.0] * 12,
        "inputs": {"file_bands": recipe.data.bands, "chip_size": [120, 120]},
        "backbone": {"name": "prithvi_eo_v2_tiny_tl", "patch_size": [1, 16, 16]},
    }  # fmt: skip
    (run / "model.json").write_text(json.dumps(manifest))
    result = _child(["predict", "--model", str(run), str(chips), "--out", str(tmp_path / "out")])
    assert result["rc"] == 2, result
    assert f"{chips / patch}: 11 of the 12 band files" in result["stderr"]
    assert "missing B8A" in result["stderr"] and result["heavy"] == []

    datamodule = BigEarthNetDataModule(str(root))  # training: torchgeo would stack 11 bands
    index = list(datamodule.patches["train"].metadata_df["patch_id"]).index(patch)
    with pytest.raises(EofmError, match=f"{folder}: 11 band files; a BigEarthNet S2 patch has 12"):
        datamodule.dataset("train")[index]

    labels = [list(v) for v in meta["labels"]]
    meta["labels"] = [["Glaciers"] if i == 1 else v for i, v in enumerate(labels)]  # not of 19
    meta.to_parquet(root / "metadata.parquet")
    with pytest.raises(EofmError, match="label 'Glaciers' .* is outside the class list"):
        BigEarthNetDataModule(str(root)).check_labels(recipe.task.class_names, "the recipe")


def test_the_run_exports_and_its_graph_is_not_taken_by_predict(
    run: Path, eurosat_root: Path, tmp_path: Path, capsys
) -> None:
    graph = tmp_path / "model.onnx"
    export = ["export", str(run), "--format", "onnx", "--tile", "64", "--output", str(graph)]
    assert main(export) == 0
    sidecar = json.loads((tmp_path / "model.onnx.json").read_text())
    assert sidecar["output"].startswith("logits (B, classes)")
    assert sidecar["parity_max_abs_diff"] <= 1e-4
    assert sidecar["class_names"] == list(EUROSAT_CLASSES)
    pt2 = [
        "export",
        str(run),
        "--format",
        "pt2",
        "--tile",
        "64",
        "--output",
        str(tmp_path / "m.pt2"),
    ]
    assert main(pt2) == 0
    chip = next((eurosat_root / EUROSAT_IMAGE_DIR / "Forest").glob("*.tif"))
    out = tmp_path / "out"
    assert main(["predict", "--model", str(graph), str(chip), "--out", str(out)]) == 2
    assert "scene_classification graph" in capsys.readouterr().err and not out.exists()

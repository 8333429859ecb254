"""HLS Burn Scars: the released layout, splits by tile, and the two recipes end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eofm.cli import main
from eofm.data.hls_burn_scars import HLSBurnScarsDataModule, scene_date, split_by_tile
from eofm.errors import EofmError
from tests.hls import make_hls_root


@pytest.fixture(scope="module")
def hls_root(tmp_path_factory) -> Path:
    return make_hls_root(tmp_path_factory.mktemp("hls"))


def tiny(root: Path, **extra: object) -> list[str]:
    values = {
        "data.root": str(root),
        "backbone.pretrained": "false",
        "decoder.channels": 16,
        "data.crop_size": 32,
        "trainer.max_epochs": 1,
        "trainer.enable_progress_bar": "false",
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def test_layout_splits_and_scaling(hls_root: Path) -> None:
    dm = HLSBurnScarsDataModule(hls_root, mean=[1087.0] * 6, std=[2248.0] * 6, crop_size=32)
    assert len(dm.splits["train"]) == 3
    held_out = dm.splits["val"] + dm.splits["test"]
    assert len(held_out) == 2 and dm.splits["val"] and dm.splits["test"]
    assert dm.mean == pytest.approx([0.1087] * 6)  # statistics in reflectance x 10000
    sample = dm.dataset("train")[0]
    assert sample["image"].shape == (6, 32, 32) and set(sample["mask"].unique().tolist()) <= {
        -1,
        0,
        1,
    }
    assert scene_date("subsetted_512x512_HLS.S30.T10SEH.2018190.v1.4") == (2018, 190)


def test_tiles_never_cross_val_and_test() -> None:
    scenes = [f"HLS.S30.T{t}.2019{d:03d}.v1.4" for t in ("10AAA", "10BBB", "11CCC") for d in (1, 2)]
    val, test = split_by_tile(scenes, 0.5)
    assert {s.split(".")[2] for s in val}.isdisjoint({s.split(".")[2] for s in test})
    assert val and test and sorted(val + test) == sorted(scenes)


def test_scene_without_its_mask_is_an_error_and_no_run_dir(tmp_path: Path, capsys) -> None:
    root = make_hls_root(
        tmp_path / "hls", drop_mask="subsetted_512x512_HLS.S30.T10SEH.2018190.v1.4"
    )
    with pytest.raises(EofmError, match="T10SEH.2018190.v1.4_merged.tif has no mask"):
        HLSBurnScarsDataModule(root, mean=None, std=None)
    run = tmp_path / "run"
    # found by fit's data check, from the file names, before any model loads (exit 2)
    assert main(["fit", "hls_burn_scars_tiny", *tiny(root), "--run-dir", str(run)]) == 2
    assert "has no mask" in capsys.readouterr().err and not run.exists()


def test_tiny_recipe_fits_tests_and_predicts(hls_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["fit", "hls_burn_scars_tiny", *tiny(hls_root), "--run-dir", str(run)]) == 0
    model = json.loads((run / "model.json").read_text())
    assert model["task"]["class_names"] == ["not_burned", "burn_scar"]
    assert model["normalisation_source"] == "backbone manifest"
    assert main(["test", str(run)]) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())["metrics"]
    assert "test/IoU_burn_scar" in metrics
    scene = next((hls_root / "validation").glob("*_merged.tif"))
    assert (
        main(
            [
                "predict",
                "--model",
                str(run),
                str(scene),
                "--out",
                str(tmp_path / "out"),
                "--tile",
                "32",
                "--overlap",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / scene.name).is_file()
    bundle = tmp_path / "bundle"  # the card describes the release's split by folder
    assert main(["publish", str(run), "--repo", "me/hls", "--dry-run", str(bundle)]) == 0
    assert "divided into val and test by MGRS tile" in (bundle / "README.md").read_text()


def test_prithvi_300_tl_lora_recipe_builds_on_hls(hls_root: Path) -> None:
    """The full-size recipe: LoRA on Prithvi-300M-TL with UPerNet over the HLS bands."""
    from eofm.families.base import family_of
    from eofm.recipe import load_recipe

    recipe = load_recipe(
        "hls_burn_scars_prithvi_v2_300_tl_lora",
        [f"data.root={hls_root}", "backbone.pretrained=false"],
    )
    family = family_of(recipe)
    model = family.build_model(recipe, bands=recipe.data.bands, pretrained=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert 0 < trainable < total * 0.1
    assert model.backbone.base_model.model.band_mapping["copied"] == recipe.data.bands


def test_prithvi_tl_lora_recipe_fits_at_test_scale(hls_root: Path, tmp_path: Path) -> None:
    """The full-size recipe end to end on CPU, with its backbone cut to the tiny TL model."""
    run = tmp_path / "run"
    args = tiny(
        hls_root,
        **{"backbone.name": "prithvi_eo_v2_tiny_tl", "data.batch_size": 2, "decoder.channels": 32},
    )
    assert main(["fit", "hls_burn_scars_prithvi_v2_300_tl_lora", *args, "--run-dir", str(run)]) == 0
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert main(["test", str(run)]) == 0

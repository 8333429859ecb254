"""Any timm model as a backbone: multi-scale CNN features into map decoders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eofm.backbones.loading import load_backbone
from eofm.cli import main
from eofm.errors import EofmError, RecipeError
from eofm.recipe import load_recipe
from tests.test_training import flood_root, overrides  # noqa: F401 - fixture reuse


def test_a_timm_cnn_gives_four_levels_with_its_normalisation() -> None:
    from eofm.backbones.loading import resolve_manifest

    manifest = resolve_manifest("timm:resnet18")
    assert manifest.family == "timm" and manifest.bands == ("RED", "GREEN", "BLUE")
    assert manifest.mean == pytest.approx((0.485, 0.456, 0.406))
    backbone = load_backbone("timm:resnet18", bands=["VV", "VH"], pretrained=False)
    maps, grid = backbone(torch.randn(1, 2, 64, 64))
    assert grid is None and [m.shape[-1] for m in maps] == [16, 8, 4, 2]
    assert backbone.feature_channels == [64, 128, 256, 512]


def test_bands_shared_with_rgb_are_mapped_by_name(caplog) -> None:
    caplog.set_level("INFO", logger="eofm")
    backbone = load_backbone("timm:resnet18", bands=["BLUE", "NIR_NARROW", "RED"], pretrained=False)
    assert backbone.band_mapping["copied"] == ["BLUE", "RED"]
    assert backbone.band_mapping["new"] == ["NIR_NARROW"]
    assert backbone.model.conv1.weight.shape[1] == 3
    s1 = load_backbone("timm:resnet18", bands=["VV", "VH"], pretrained=False)
    assert s1.model.conv1.weight.shape[1] == 2
    assert "in_chans adaptation" in caplog.text


def test_unknown_timm_model_is_a_clear_error() -> None:
    with pytest.raises(EofmError, match="timm has no model 'resnet19'.*resnet"):
        load_backbone("timm:resnet19", pretrained=False)


def test_failed_download_is_an_error_unless_random_init_is_allowed(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EofmError, match="resnet18"):
        load_backbone("timm:resnet18", bands=["VV", "VH"], pretrained=True)
    backbone = load_backbone(
        "timm:resnet18", bands=["VV", "VH"], pretrained=True, allow_random_init=True
    )
    assert backbone.source is None


@pytest.mark.parametrize(
    ("decoder", "ok"), [("unet", True), ("upernet", True), ("linear", True), ("progressive", False)]
)
def test_map_decoders_on_cnn_features(decoder: str, ok: bool) -> None:
    from eofm.families.segmentation import SegmentationFamily

    recipe = load_recipe(
        "demo",
        [
            "backbone.name=timm:resnet18",
            "backbone.pretrained=false",
            f"decoder.name={decoder}",
            "decoder.channels=16",
        ],
    )
    family = SegmentationFamily()
    if not ok:
        with pytest.raises(RecipeError, match="unet, upernet or linear"):
            family.build_model(recipe, bands=["VV", "VH"], pretrained=False)
        return
    model = family.build_model(recipe, bands=["VV", "VH"], pretrained=False)
    logits = model(torch.randn(2, 2, 64, 64))
    assert logits.shape == (2, 2, 64, 64)


def test_timm_unet_trains_through_eofm_fit(flood_root: Path, tmp_path: Path) -> None:  # noqa: F811
    run = tmp_path / "run"
    args = overrides(
        flood_root,
        **{
            "backbone.name": "timm:resnet18",
            "decoder.name": "unet",
            "trainer.max_epochs": 1,
            "adapter.mode": "full",
        },
    )
    assert main(["fit", "demo", *args, "--run-dir", str(run)]) == 0
    model = json.loads((run / "model.json").read_text())
    assert (
        model["backbone"]["name"] == "timm:resnet18" and model["backbone"]["patch_size"][-1] == 32
    )
    assert main(["test", str(run)]) == 0
    assert (run / "test_metrics.json").is_file()


def test_bad_timm_name_in_fit_leaves_no_run_dir(flood_root: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    run = tmp_path / "run"
    args = overrides(flood_root, **{"backbone.name": "timm:not_a_model"})
    assert main(["fit", "demo", *args, "--run-dir", str(run)]) == 1
    assert "not_a_model" in capsys.readouterr().err and not run.exists()

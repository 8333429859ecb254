"""Scale-MAE: the released layout, GSD-aware positions, equivalence with torchgeo's model."""

from __future__ import annotations

import io
import json
from functools import partial

import pytest
import torch
from torch import nn

from eofm.backbones.loading import load_backbone
from eofm.errors import EofmError

TINY = {
    "architecture": "scalemae",
    "img_size": 64,
    "patch_size": 16,
    "in_chans": 3,
    "embed_dim": 64,
    "depth": 4,
    "num_heads": 4,
    "bands": ["RED", "GREEN", "BLUE"],
}


def torchgeo_scalemae(**kwargs) -> nn.Module:
    from torchgeo.models.scale_mae import ScaleMAE

    return ScaleMAE(
        qkv_bias=True, mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6), **kwargs
    )


def release_bytes(model: nn.Module) -> bytes:
    """The state dict in the release layout (no classification head), as a .pth file."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(hub) -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    reference = torchgeo_scalemae(img_size=64, patch_size=16, embed_dim=64, depth=4, num_heads=4)
    for p in reference.parameters():  # visible weights, not the near-zero init
        p.data.normal_(0, 0.05)
    repo = "tester/scalemae-tiny"
    hub.add_commit(
        repo,
        {
            "scalemae-tiny.pth": release_bytes(reference),
            "config.json": json.dumps({"pretrained_cfg": TINY}).encode(),
        },
    )
    return reference.eval(), f"hf://{repo}"


def reference_layers(model: nn.Module, x: torch.Tensor, res: float) -> list[torch.Tensor]:
    """Every block's output of torchgeo's ScaleMAE at ``res`` (the last one normed)."""
    outputs = []
    hooks = [b.register_forward_hook(lambda m, i, o: outputs.append(o)) for b in model.blocks]
    model.res = res
    with torch.no_grad():
        final = model.forward_features(x)
    for h in hooks:
        h.remove()
    return outputs[:-1] + [final]


@pytest.mark.parametrize("gsd", [1.0, 2.5])
def test_every_tapped_layer_equals_torchgeo(served, gsd: float) -> None:
    reference, spec = served
    encoder = load_backbone(spec).eval()
    assert encoder.source and encoder.source["file"] == "scalemae-tiny.pth"
    x = torch.randn(2, 3, 64, 64)
    expected = reference_layers(reference, x, gsd)
    with torch.no_grad():
        ours, grid = encoder(x, tap_layers=(0, 1, 2, 3), gsd=gsd)
    assert grid == (1, 4, 4)
    for layer, (a, b) in enumerate(zip(ours, expected, strict=True)):
        assert (a - b).abs().max().item() < 1e-5, layer


def test_the_gsd_changes_the_output_and_may_differ_per_sample(served) -> None:
    _, spec = served
    encoder = load_backbone(spec).eval()
    x = torch.randn(1, 3, 64, 64).expand(2, -1, -1, -1)
    with torch.no_grad():
        native, _ = encoder(x, gsd=1.0)
        coarse, _ = encoder(x, gsd=4.0)
        mixed, _ = encoder(x, gsd=torch.tensor([1.0, 4.0]))
    assert (native[-1] - coarse[-1]).abs().max() > 1e-3
    assert torch.allclose(mixed[-1][0], native[-1][0], atol=1e-6)
    assert torch.allclose(mixed[-1][1], coarse[-1][1], atol=1e-6)


def test_registered_large_model_matches_the_release_layout() -> None:
    """scalemae_large_patch16 has exactly the keys and shapes of torchgeo's ViT-L/16
    (built on the meta device: no memory, no download)."""
    from eofm.backbones.loading import encoder_class
    from eofm.registry import backbone_manifest

    manifest = backbone_manifest("scalemae_large_patch16")
    assert manifest.hub_repo == "isaaccorley/vit_large_patch16_224_fmow_rgb_scalemae"
    assert manifest.revision == "9dc7f569424baeb780698352cf6e87638c882123"
    assert manifest.bands == ("RED", "GREEN", "BLUE")
    with torch.device("meta"):
        ours = encoder_class(manifest)(manifest.config, manifest)
        theirs = torchgeo_scalemae(patch_size=16, embed_dim=1024, depth=24, num_heads=16)
    expected = {
        k: tuple(v.shape) for k, v in theirs.state_dict().items() if not k.startswith("head.")
    }
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert expected["pos_embed"] == (1, 197, 1024)


def test_scalemae_trains_through_a_segmentation_recipe(served) -> None:
    from eofm.families.segmentation import SegmentationFamily
    from eofm.recipe import load_recipe

    _, spec = served
    recipe = load_recipe(
        "sen1floods11_s2_scalemae_rgb_lora",
        [
            f"backbone.name={spec}",
            "backbone.tap_layers=[0,1,2,3]",
            "decoder.channels=16",
            "backbone.gsd=2.0",
        ],
    )
    model = SegmentationFamily().build_model(recipe, bands=recipe.data.bands, pretrained=True)
    assert model.backbone.base_model.model.gsd == 2.0
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 2, 64, 64)
    logits.mean().backward()


def test_scalemae_needs_rgb(served) -> None:
    _, spec = served
    with pytest.raises(EofmError, match="RED, GREEN and BLUE"):
        load_backbone(spec, bands=["VV", "VH"])


def test_scalemae_recipe_fits_with_the_gsd_of_each_chip(
    served, tmp_path, capsys, monkeypatch
) -> None:
    """The S2 RGB recipe end to end at test scale: S2Hand chips in the released format,
    res from each chip's resolution (about 10 m over the backbone's reference)."""
    from pathlib import Path

    from eofm.cli import main
    from tests.realdata import make_s2hand_chips

    _, spec = served
    root = make_s2hand_chips(tmp_path / "HandLabeled")
    run = tmp_path / "run"
    args = [
        f"data.root={root}",
        f"backbone.name={spec}",
        "backbone.tap_layers=[0,1,2,3]",
        "backbone.gsd_reference_m=10.0",
        "decoder.channels=16",
        "data.crop_size=64",
        "data.batch_size=2",
        "data.split_csv=null",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = ["fit", "sen1floods11_s2_scalemae_rgb_lora", *args, "--run-dir", str(run)]
        assert main(fit) == 0
    # issue 34 item 15: one training batch per epoch, no warning that the logging interval
    # (10) exceeds it: steps are logged once an epoch
    assert not [w for w in caught if "logging interval" in str(w.message)]
    model = json.loads((Path(run) / "model.json").read_text())
    assert model["backbone"]["coords"]["gsd"] is True
    assert model["backbone"]["gsd"] == {"value": None, "reference_m": 10.0}
    # issue 34 item 16: a LoRA run on a pinned pretrained base keeps only what it trains
    # and the pin, not the backbone (a Scale-MAE-large run wrote 1.39 GB per checkpoint)
    from eofm.train.rundir import load_checkpoint

    for name in ("best", "last"):
        state, base = load_checkpoint(Path(run) / "checkpoints" / f"{name}.ckpt")
        assert base is not None and base["repo"] == "tester/scalemae-tiny"
        assert len(base["revision"]) == 40
        frozen = [k for k in state if k.startswith("model.backbone.") and "lora_" not in k]
        assert not [k for k in frozen if k.endswith(".weight") and "blocks" in k], frozen[:3]
        assert any("lora_" in k for k in state)
    assert main(["test", str(run)]) == 0
    check_predict_without_crs(run, tmp_path, capsys, monkeypatch)
    # a random base keeps everything: nothing could bring its weights back
    random_run = tmp_path / "random"
    fit = ["fit", "sen1floods11_s2_scalemae_rgb_lora", *args, "backbone.pretrained=false"]
    assert main([*fit, "--run-dir", str(random_run)]) == 0
    state, base = load_checkpoint(random_run / "checkpoints" / "last.ckpt")
    assert base is None and any(k.startswith("model.backbone.") and "blocks" in k for k in state)


def check_predict_without_crs(run, tmp_path, capsys, monkeypatch) -> None:
    """Issue 34 item 6: a raster without CRS is refused before the model loads, names
    --gsd and leaves no output folder; with --gsd it is predicted."""
    import numpy as np
    import rasterio

    import eofm.families.restore
    from eofm.cli import main

    scene = tmp_path / "nocrs.tif"
    values = np.random.default_rng(1).integers(1, 4000, size=(3, 64, 64)).astype(np.int16)
    with rasterio.open(
        scene, "w", driver="GTiff", width=64, height=64, count=3, dtype="int16"
    ) as ds:
        ds.write(values)
    out = tmp_path / "pred"
    predict = ["predict", "--model", str(run), str(scene), "--out", str(out), "--no-progress"]
    real_load = eofm.families.restore.load_trained

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(eofm.families.restore, "load_trained", no_loading)
    assert main(predict) == 1
    err = capsys.readouterr().err
    assert "no CRS" in err and "--gsd" in err and "backbone.gsd" not in err
    assert not out.exists()
    monkeypatch.setattr(eofm.families.restore, "load_trained", real_load)
    assert main([*predict, "--gsd", "10"]) == 0
    with rasterio.open(out / "nocrs.tif") as ds:
        assert ds.count == 1 and ds.crs is None


def test_gsd_is_refused_for_a_model_that_does_not_read_it(tmp_path, capsys) -> None:
    """--gsd on a model whose GSD is not read from the inputs would be silently ignored."""
    from eofm.cli import main
    from tests.runs import make_run_dir
    from tests.test_nothing_lost import NIGERIA

    run = make_run_dir(tmp_path / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    out = tmp_path / "out"
    args = ["predict", "--model", str(run), str(NIGERIA), "--out", str(out), "--gsd", "10"]
    assert main(args) == 2
    assert "--gsd" in capsys.readouterr().err and not out.exists()


def test_only_a_pinned_pretrained_base_is_left_out_of_checkpoints() -> None:
    from eofm.checkpoint_format import light_checkpoint_base

    sha = "a" * 40
    record = {"name": "x", "repo": "o/x", "revision": sha, "file": "w.pth"}
    assert light_checkpoint_base({**record, "pretrained_loaded": True}) == record
    assert light_checkpoint_base({**record, "pretrained_loaded": False}) is None
    # timm's weights come from a branch (main): not a pin, so everything is kept
    assert light_checkpoint_base({**record, "revision": "main", "pretrained_loaded": True}) is None


def test_scalemae_chips_get_their_metres_per_pixel(tmp_path) -> None:
    from eofm.data.sen1floods11 import Sen1Floods11DataModule
    from tests.realdata import make_s2hand_chips

    root = make_s2hand_chips(tmp_path / "HandLabeled")
    dm = Sen1Floods11DataModule(
        root, ["RED", "GREEN", "BLUE"], mean=None, std=None, crop_size=32, gsd_from_data=True
    )
    sample = dm.dataset("train")[0]
    assert 9.0 < float(sample["gsd_m"]) < 11.0  # Sen1Floods11: about 10 m in EPSG:4326


def test_a_raster_without_crs_has_no_metric_resolution(tmp_path) -> None:
    import numpy as np
    import rasterio

    from eofm.data.coords import metres_per_pixel

    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(EofmError, match="no CRS.*backbone.gsd"):
        metres_per_pixel(path)

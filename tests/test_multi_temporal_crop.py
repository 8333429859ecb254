"""Multi-temporal inputs: Prithvi's multi-temporal crop classification, a multi-frame
Prithvi-EO-2.0 and a one-frame backbone with a temporal pooling, and prediction on a
multi-date stack or on single-date scenes of one grid (issue 36, item 3)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from eofm.cli import main
from eofm.data.multi_temporal_crop_layout import CLASS_NAMES, release_pairs
from eofm.errors import EofmError
from tests.multi_temporal_crop import CHIPS, TRAJECTORIES, make_crop_root, single_date_scenes

DATES = ["2022-04-10", "2022-06-20", "2022-08-30"]
FRAMES = (
    "["
    + ", ".join(
        f"{{name: {n}, date: {d}}}"
        for n, d in zip(("spring", "summer", "autumn"), DATES, strict=True)
    )
    + "]"
)


@pytest.fixture(scope="module")
def crop_root(tmp_path_factory) -> Path:
    return make_crop_root(tmp_path_factory.mktemp("crop"))


def tiny(root: Path, **extra: object) -> list[str]:
    values = {
        "data.root": str(root),
        "data.frames": FRAMES,
        "backbone.pretrained": "false",
        "decoder.channels": 16,
        "data.crop_size": 32,
        "data.batch_size": 2,
        "trainer.max_epochs": 1,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": "false",
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def test_fixture_has_the_released_layout(crop_root: Path) -> None:
    """Names, lists, band count, dtype, nodata and frame-major band order of the release."""
    assert {p.name for p in crop_root.iterdir()} == {
        "training_chips", "validation_chips", "training_data.txt", "validation_data.txt",
    }  # fmt: skip
    for folder, listing in (("training_chips", "training_data.txt"), ("validation_chips", "validation_data.txt")):  # fmt: skip
        ids = (crop_root / listing).read_text().split()
        assert ids == [c for f, c in CHIPS if f == folder]
        for chip in ids:
            assert re.fullmatch(r"chip_\d{3}_\d{3}", chip)
            names = {p.name for p in (crop_root / folder).glob(f"{chip}*")}
            assert names == {f"{chip}_merged.tif", f"{chip}.mask.tif"}
    image, mask = release_pairs(crop_root)["training_chips"]["chip_090_484"]
    with rasterio.open(image) as ds, rasterio.open(mask) as ms:
        assert ds.count == 18 and set(ds.dtypes) == {"int16"} and ds.nodata == -9999
        assert ds.res == (30.0, 30.0) and ds.crs.to_epsg() == 5070
        assert ms.count == 1 and ms.dtypes[0] == "uint8" and ms.shape == ds.shape
        labels = ms.read(1)
        assert set(np.unique(labels)) <= set(range(len(CLASS_NAMES) + 1))
        data = ds.read().astype(float)
    # frame-major: band 6t + 4 is the NIR of date t, planted with each class's trajectory
    for value, trajectory in TRAJECTORIES.items():
        nir = [data[6 * t + 3][labels == value].mean() for t in range(3)]
        assert np.argmax(nir) == int(np.argmax(trajectory))
    assert len(CLASS_NAMES) == 13


def test_samples_labels_and_dates(crop_root: Path) -> None:
    from eofm.data.multi_temporal_crop import MultiTemporalCropDataModule

    frames = [{"name": n, "date": d} for n, d in zip(("a", "b", "c"), DATES, strict=True)]
    dm = MultiTemporalCropDataModule(
        crop_root, mean=None, std=None, crop_size=None, frames=frames, temporal_coords=True
    )
    assert sorted(dm.splits["train"]) == sorted(c for f, c in CHIPS if f == "training_chips")
    assert len(dm.splits["val"]) == 1 and len(dm.splits["test"]) == 1
    assert dm.mean[:6] == dm.mean[6:12] == dm.mean[12:]  # one statistic per band
    sample = dm.dataset("val")[0]
    assert sample["image"].shape == (18, 32, 32)
    assert sample["temporal_coords"].tolist() == [[2022, 100], [2022, 171], [2022, 242]]
    mask = sample["mask"]
    assert (mask[:2] == -1).all()  # value 0 "No Data" is ignored
    assert set(mask[2:].unique().tolist()) <= {-1, 0, 2, 3}  # values 1, 3, 4 -> classes 0, 2, 3


def test_per_chip_dates_from_the_metadata_table(tmp_path: Path) -> None:
    """TerraTorch's chip_df_final.csv gives each chip its own dates; the others keep
    data.frames' dates."""
    from eofm.data.multi_temporal_crop import MultiTemporalCropDataModule

    root = make_crop_root(tmp_path / "crop")
    (root / "chip_df_final.csv").write_text(
        "chip_id,first_img_date,middle_img_date,last_img_date\n"
        "chip_198_312,2022-03-02,2022-07-01,2022-09-29\n"
    )
    frames = [{"name": n, "date": d} for n, d in zip(("a", "b", "c"), DATES, strict=True)]
    dm = MultiTemporalCropDataModule(
        root, mean=None, std=None, crop_size=None, frames=frames, temporal_coords=True
    )
    own = dm.dataset("val")[0]  # chip_198_312
    shared = dm.dataset("test")[0]
    assert own["chip"] == "chip_198_312"
    assert own["temporal_coords"].tolist() == [[2022, 61], [2022, 182], [2022, 272]]
    assert shared["temporal_coords"].tolist() == [[2022, 100], [2022, 171], [2022, 242]]


@pytest.mark.parametrize("mode", ["mean", "max", "concat", "attention"])
@pytest.mark.parametrize("backbone", ["prithvi_eo_v2_tiny_tl", "timm:resnet18"])
def test_temporal_pooling_shapes_and_frame_order(mode: str, backbone: str, crop_root: Path) -> None:
    from eofm.families.segmentation import SegmentationFamily
    from eofm.recipe import load_recipe

    decoder = "unet" if backbone.startswith("timm") else "progressive"
    recipe = load_recipe(
        "multi_temporal_crop_resnet18_attention",
        tiny(
            crop_root,
            **{"backbone.name": backbone, "backbone.temporal": mode, "decoder.name": decoder},
        ),
    )
    torch.manual_seed(0)
    model = SegmentationFamily().build_model(recipe, bands=None, pretrained=False).eval()
    if mode == "attention":  # trained: the frames' scores differ (zero at initialisation)
        model.frames.frame_bias.data = torch.tensor([2.0, 0.0, -2.0])
    x = torch.randn(2, 18, 32, 32)
    with torch.no_grad():
        out = model(x)
        swapped = model(x.reshape(2, 3, 6, 32, 32).flip(1).reshape(2, 18, 32, 32))
    assert out.shape == (2, 13, 32, 32)
    order_free = mode in ("mean", "max")
    assert torch.allclose(out, swapped, atol=1e-5) == order_free


def test_native_frames_need_a_multi_frame_backbone(crop_root: Path) -> None:
    from eofm.families.segmentation import SegmentationFamily
    from eofm.recipe import load_recipe

    recipe = load_recipe(
        "multi_temporal_crop_resnet18_attention",
        tiny(crop_root, **{"backbone.temporal": "native"}),
    )
    with pytest.raises(EofmError, match="backbone.temporal to mean, max, concat or attention"):
        SegmentationFamily().build_model(recipe, bands=None, pretrained=False)


def test_prithvi_takes_the_frames_natively_with_a_date_each(crop_root: Path) -> None:
    from eofm.families.segmentation import SegmentationFamily
    from eofm.recipe import load_recipe

    recipe = load_recipe(
        "multi_temporal_crop_prithvi_v2_300_tl_lora",
        tiny(
            crop_root, **{"backbone.name": "prithvi_eo_v2_tiny_tl", "decoder.name": "progressive"}
        ),
    )
    model = SegmentationFamily().build_model(recipe, bands=None, pretrained=False).eval()
    encoder = model.backbone.base_model.model
    assert encoder.config.num_frames == 3 and model.frames.mode == "native"
    seen = {}
    encoder.patch_embed.register_forward_hook(lambda m, a, o: seen.update(shape=a[0].shape))
    dates = torch.tensor([[[2022.0, 100.0], [2022.0, 171.0], [2022.0, 242.0]]])
    with torch.no_grad():
        dated = model(torch.randn(1, 18, 32, 32), dates)
        undated = model(torch.randn(1, 18, 32, 32))
    assert seen["shape"] == (1, 6, 3, 32, 32)  # (B, C, T, H, W)
    assert dated.shape == undated.shape == (1, 13, 32, 32)


def _predict(run: Path, inputs: list[Path], out: Path) -> int:
    return main(
        ["predict", "--model", str(run), *map(str, inputs), "--out", str(out), "--no-progress"]
    )


def test_prithvi_recipe_fits_tests_and_predicts_stacks_and_dates(
    crop_root: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    args = tiny(
        crop_root, **{"backbone.name": "prithvi_eo_v2_tiny_tl", "decoder.name": "progressive"}
    )
    assert (
        main(["fit", "multi_temporal_crop_prithvi_v2_300_tl_lora", *args, "--run-dir", str(run)])
        == 0
    )
    model = json.loads((run / "model.json").read_text())
    assert model["bands"][:2] == ["BLUE@spring", "GREEN@spring"] and len(model["bands"]) == 18
    assert [f["name"] for f in model["frames"]] == ["spring", "summer", "autumn"]
    assert model["backbone"]["num_frames"] == 3 and model["backbone"]["coords"]["time"]
    assert main(["test", str(run)]) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())["metrics"]
    assert "test/IoU_corn" in metrics
    stack = crop_root / "validation_chips" / "chip_198_312_merged.tif"
    out = tmp_path / "out"
    assert _predict(run, [stack], out) == 0
    with rasterio.open(out / "chip_198_312_merged.tif") as ds:
        from_stack = ds.read(1)
    scenes = single_date_scenes(stack, tmp_path / "scenes", DATES)
    assert _predict(run, scenes, out) == 0
    with rasterio.open(out / "HLS_2022-04-10_frames.tif") as ds:
        from_dates = ds.read(1)
        assert ds.shape == from_stack.shape
    # the same pixels; only the dates (in the scenes' tags, not the stack's) differ
    assert (from_dates == from_stack).mean() > 0.5
    with rasterio.open(scenes[2], "r+") as ds:  # the last date on another grid
        t = ds.transform
        ds.transform = from_origin(t.c + 2 * t.a, t.f, t.a, -t.e)
    fresh = tmp_path / "fresh"
    assert _predict(run, scenes, fresh) == 2
    err = capsys.readouterr().err
    assert "share a grid" in err and str(scenes[2]) in err and not fresh.exists()


def test_one_frame_recipe_with_temporal_attention_end_to_end(
    crop_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = tiny(crop_root)
    assert (
        main(["fit", "multi_temporal_crop_resnet18_attention", *args, "--run-dir", str(run)]) == 0
    )
    model = json.loads((run / "model.json").read_text())
    assert model["normalisation_source"].startswith("training-split")
    assert main(["test", str(run)]) == 0
    stack = crop_root / "validation_chips" / "chip_198_312_merged.tif"
    scenes = single_date_scenes(stack, tmp_path / "scenes", DATES)
    out = tmp_path / "out"
    assert _predict(run, [stack, *scenes], out) == 0
    assert {p.name for p in out.glob("*.tif")} == {
        "chip_198_312_merged.tif",
        "HLS_2022-04-10_frames.tif",
    }


def test_frames_of_different_grids_are_one_error_naming_the_files(
    crop_root: Path, tmp_path: Path
) -> None:
    from eofm.data.frame_stack import stack_single_dates

    stack = crop_root / "validation_chips" / "chip_198_312_merged.tif"
    scenes = single_date_scenes(stack, tmp_path / "scenes", DATES)
    frames = [{"name": n} for n in ("a", "b", "c")]
    bands = [
        f"{b}@{f}"
        for f in "abc"
        for b in ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
    ]
    vrt = stack_single_dates(scenes, frames, bands)[0]  # one grid: one stack, dated
    with rasterio.open(vrt) as ds, rasterio.open(stack) as original:
        assert ds.count == 18 and ds.tags()["FRAME_DATES"] == ",".join(DATES)
        assert (ds.read() == original.read()).all() and ds.nodata == original.nodata
    with rasterio.open(scenes[1], "r+") as ds:  # one date shifted by a pixel
        t = ds.transform
        ds.transform = from_origin(t.c + t.a, t.f, t.a, -t.e)
    with pytest.raises(EofmError, match="share a grid") as info:
        stack_single_dates(scenes, frames, bands)
    assert str(scenes[1]) in str(info.value) and str(scenes[0]) in str(info.value)
    with pytest.raises(EofmError, match="3 at a time"):
        stack_single_dates(scenes[:2], frames, bands)


CHILD = r"""
import contextlib, io, json, sys
from eofm.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    rc = main(json.loads(sys.argv[1]))
heavy = [m for m in ("torch", "lightning", "timm", "peft") if m in sys.modules]
print(json.dumps({"rc": rc, "stderr": err.getvalue(), "heavy": heavy}))
"""


def _light(argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argv)], capture_output=True, text=True, timeout=120
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ("frames", "names 2 frames"),
        ("bands", "chip_177_428_merged.tif has 12 bands"),
        ("list", "chip_999_999 listed in"),
        ("date", "data.frames[1].date"),
    ],
)
def test_bad_data_fails_before_torch_naming_the_file_or_key(
    change: str, needle: str, tmp_path: Path
) -> None:
    root = make_crop_root(tmp_path / "crop", bands=12 if change == "bands" else 18)
    args = tiny(root)
    if change == "frames":
        args = [a for a in args if not a.startswith("data.frames")] + [
            "data.frames=[{name: a}, {name: b}]"
        ]
    if change == "date":
        args = [a for a in args if not a.startswith("data.frames")] + [
            "data.frames=[{name: a}, {name: b, date: '2022-13-01'}, {name: c}]"
        ]
    if change == "list":
        (root / "training_data.txt").write_text("chip_090_484\nchip_999_999\n")
    run = tmp_path / "run"
    result = _light(["fit", "multi_temporal_crop_resnet18_attention", *args, "--run-dir", str(run)])
    assert result["rc"] == 2 and needle in result["stderr"], result["stderr"]
    assert result["heavy"] == [] and not run.exists()


def test_a_label_outside_the_classes_names_the_mask(tmp_path: Path) -> None:
    from eofm.data.multi_temporal_crop import MultiTemporalCropDataModule

    root = make_crop_root(tmp_path / "crop", mask_value=20)
    with pytest.raises(
        EofmError, match=r"chip_177_428.mask.tif of chip chip_177_428 holds value\(s\) \[20\]"
    ):
        MultiTemporalCropDataModule(root, mean=None, std=None)

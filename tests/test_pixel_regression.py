"""Pixel-wise regression on EO imagery (issue 36, item 2): image/target GeoTIFF pairs
fitted, tested and predicted end to end with a tiny random-init backbone; the float COG
and its MC-dropout standard deviation; masked losses; bad pairs as one clear error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eofm.cli import main
from tests.geotiff_targets import NODATA, SIZE, STEMS, make_pairs, planted_height, profile, write

RECIPE = "canopy_height_geotiff_prithvi_v2_300_tl_lora"


def tiny(root: Path, **extra: object) -> list[str]:
    """The shipped recipe on a tiny random-init backbone, one epoch on the CPU."""
    values = {
        "data.root": str(root),
        "backbone.name": "prithvi_eo_v2_tiny_tl",
        "backbone.pretrained": "false",
        "adapter.rank": 4,
        "decoder.name": "progressive",
        "decoder.channels": 16,
        "data.crop_size": "null",
        "data.batch_size": 2,
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
def pairs_root(tmp_path_factory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("canopy"))


@pytest.fixture(scope="module")
def run(pairs_root: Path, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "canopy"
    assert main(["fit", RECIPE, *tiny(pairs_root), "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_fit_test_and_predict_a_float_map(run: Path, pairs_root: Path, tmp_path: Path) -> None:
    model = json.loads((run / "model.json").read_text())
    task = model["task"]
    assert task["type"] == "pixel_regression" and task["class_names"] == ["canopy_height"]
    assert task["units"] == "m" and task["loss"] == "huber"
    assert task["target_std"] > 0 and model["backbone"]["pretrained_loaded"] is False
    assert main(["test", str(run)]) == 0
    record = json.loads((run / "test_metrics.json").read_text())
    metrics = record["metrics"]
    assert set(metrics) >= {"test/RMSE", "test/MAE", "test/R2", "test/bias", "test/loss"}
    assert (run / "pred_vs_obs.png").stat().st_size > 0
    density = np.array(record["density"]["observed_by_predicted"])
    chips = record["test_chips"]
    assert chips and set(chips) <= set(STEMS)
    valid = []
    for chip in chips:
        with rasterio.open(pairs_root / "target" / f"{chip}.tif") as src:
            valid.append(src.read(1) != NODATA)
    with_input = sum(int((v & _input_valid()).sum()) for v in valid)
    assert density.sum() == record["density"]["pixels"] == with_input

    out = tmp_path / "out"
    scenes = [str(pairs_root / "image" / f"{c}.tif") for c in chips]
    argv = ["predict", "--model", str(run), *scenes, "--out", str(out), "--tile", str(SIZE)]
    assert main([*argv, "--overlap", "0"]) == 0
    errors = []
    for chip in chips:
        with rasterio.open(out / f"{chip}.tif") as cog:
            assert cog.dtypes[0] == "float32" and cog.count == 1 and np.isnan(cog.nodata)
            assert cog.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert cog.descriptions[0] == "canopy_height"
            assert cog.tags().get("eofm_backbone_weights", "").startswith("random")
            values = cog.read(1)
        assert np.isnan(values[-1, -1]) and np.isfinite(values[:-1]).all()  # the invalid input
        with rasterio.open(pairs_root / "target" / f"{chip}.tif") as src:
            truth = src.read(1)
        scored = (truth != NODATA) & _input_valid()
        errors.append(values[scored] - truth[scored])
    errors = np.concatenate(errors).astype(np.float64)
    # the map is the model on the whole chip: the test scores follow from it
    assert np.sqrt(np.mean(errors**2)) == pytest.approx(metrics["test/RMSE"], rel=1e-3)
    assert errors.mean() == pytest.approx(metrics["test/bias"], rel=1e-3, abs=1e-3)
    assert not (out / f"{chips[0]}.png").exists()  # no class quicklook for a value map


def _input_valid() -> np.ndarray:
    valid = np.ones((SIZE, SIZE), bool)
    valid[-1, -1] = False
    return valid


def test_mc_dropout_writes_a_standard_deviation_band(run: Path, pairs_root: Path, tmp_path):
    scene = pairs_root / "image" / f"{STEMS[0]}.tif"
    out = tmp_path / "mc"
    argv = ["predict", "--model", str(run), str(scene), "--out", str(out), "--tile", "32"]
    assert main([*argv, "--overlap", "0", "--uncertainty", "mc-dropout:4"]) == 0
    with rasterio.open(out / f"{STEMS[0]}_std.tif") as cog:
        assert cog.dtypes[0] == "float32" and "standard deviation" in cog.descriptions[0]
        spread = cog.read(1)
    assert np.isnan(spread[-1, -1])
    finite = spread[np.isfinite(spread)]
    assert (finite >= 0).all() and finite.max() > 0  # dropout passes differ
    with rasterio.open(out / f"{STEMS[0]}.tif") as cog:
        assert np.isfinite(cog.read(1)[:-1]).all()


def test_options_a_value_map_has_not_are_refused(run: Path, pairs_root: Path, tmp_path, capsys):
    scene = str(pairs_root / "image" / f"{STEMS[0]}.tif")
    for flag in (["--probabilities"], ["--vector", "geojson"], ["--uncertainty", "entropy"]):
        assert main(["predict", "--model", str(run), scene, "--out", str(tmp_path), *flag]) == 2
        assert flag[0] in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["mse", "l1", "huber"])
def test_masked_losses_ignore_nodata_pixels(kind: str) -> None:
    import torch
    import torch.nn.functional as F

    from eofm.lightning_tasks.pixel_regression import masked_loss

    prediction = torch.tensor([[[1.0, 2.0], [3.0, 40.0]]])
    target = torch.tensor([[[1.5, 0.0], [3.0, float("nan")]]])
    expected = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss}[kind](
        prediction[..., :3].flatten()[:3], torch.tensor([1.5, 0.0, 3.0])
    )
    assert masked_loss(prediction, target, kind) == pytest.approx(float(expected))
    empty = torch.full_like(target, float("nan"))
    assert float(masked_loss(prediction, empty, kind)) == 0.0


CHILD = r"""
import contextlib, io, json, sys
from eofm.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    rc = main(json.loads(sys.argv[1]))
heavy = [m for m in ("torch", "lightning", "torchgeo") if m in sys.modules]
print(json.dumps({"rc": rc, "stderr": err.getvalue(), "heavy": heavy}))
"""


def _broken(root: Path, how: str) -> Path:
    stem = STEMS[1]
    target = root / "target" / f"{stem}.tif"
    if how == "missing target":
        target.unlink()
    elif how == "no valid pixel":
        write(target, np.full((1, SIZE, SIZE), NODATA, np.float32), profile(1, "float32"))
    else:  # another grid: shifted by a pixel
        truth = np.zeros((1, SIZE, SIZE), np.float32)
        write(target, truth, profile(1, "float32", left=500030.0))
    return target


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing target", "has no target"),
        ("no valid pixel", "no valid pixel"),
        ("another grid", "is not on the grid of"),
    ],
)
def test_bad_pairs_fail_in_one_line_naming_the_file(
    pairs_root: Path, tmp_path: Path, how: str, message: str
) -> None:
    root = tmp_path / "data"
    shutil.copytree(pairs_root, root)
    target = _broken(root, how)
    argv = ["fit", RECIPE, *tiny(root), "--run-dir", str(tmp_path / "run")]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argv)], capture_output=True, text=True, check=True
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["rc"] == 2, result
    lines = [line for line in result["stderr"].splitlines() if line.startswith("eofm: error:")]
    assert len(lines) == 1 and message in lines[0] and str(target.name) in lines[0]
    assert result["heavy"] == []  # found from headers and the target band, before torch
    assert not (tmp_path / "run").exists()


def test_planted_height_is_what_the_fixture_writes(pairs_root: Path) -> None:
    with rasterio.open(pairs_root / "image" / f"{STEMS[0]}.tif") as src:
        image = src.read().astype(np.float32)
    with rasterio.open(pairs_root / "target" / f"{STEMS[0]}.tif") as src:
        truth = src.read(1)
    assert np.allclose(truth[4:-1], planted_height(image)[4:-1])


def test_tta_values_are_unflipped_before_averaging() -> None:
    """``--uncertainty tta`` on a value model: each flipped view's output is flipped
    back, so a model that copies its first band gives that band, with zero spread."""
    from types import SimpleNamespace

    import torch

    from eofm.predict.members import TileModel
    from eofm.predict.products import product_block

    class FirstBand(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :1] * 1.0

    member = SimpleNamespace(
        model=FirstBand(), class_names=["height"], bands=["RED"], mean=[0.0], std=[1.0],
        temperature=1.0, source="toy",
    )  # fmt: skip
    tiles = TileModel([member], uncertainty="tta", values=True).to(torch.device("cpu"))
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    channels = tiles(x, [], {})
    assert tiles.channels == 2 and channels.shape == (1, 2, 4, 4)
    assert torch.equal(channels[0, 0], x[0, 0])  # the mean of the four unflipped views
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False
    std = product_block("std", channels[0].numpy(), valid, 1)
    value = product_block("value", channels[0].numpy(), valid, 1)
    assert np.isnan(std[0, 0, 0]) and np.allclose(std[0, 1:], 0, atol=1e-3)
    assert np.isnan(value[0, 0, 0]) and np.array_equal(value[0, 1:], x[0, 0, 1:].numpy())


def test_the_exported_graph_predicts_the_runs_value_map(
    run: Path, pairs_root: Path, tmp_path: Path
) -> None:
    """ONNX export (the target scaling is in the graph) and predict from it, as from the run."""
    graph = tmp_path / "model.onnx"
    export = ["export", str(run), "--format", "onnx", "--tile", str(SIZE), "--dynamic-batch"]
    assert main([*export, "--output", str(graph)]) == 0
    sidecar = json.loads((tmp_path / "model.onnx.json").read_text())
    assert sidecar["output"].startswith("values") and sidecar["parity_max_abs_diff"] <= 1e-4
    scene = str(pairs_root / "image" / f"{STEMS[0]}.tif")
    common = [scene, "--tile", str(SIZE), "--overlap", "0", "--no-progress"]
    common += ["--uncertainty", "tta"]  # the four flips: the value and its spread
    for model, out in ((run, "pt"), (graph, "ort")):
        assert main(["predict", "--model", str(model), *common, "--out", str(tmp_path / out)]) == 0
    # the spread is sqrt(E[x^2] - E[x]^2) in float32: near zero it is rounding noise of the
    # second moment, about |x| * sqrt(eps) (0.01 m at 30 m), whichever runtime sums it
    for name, atol in ((f"{STEMS[0]}.tif", 1e-4), (f"{STEMS[0]}_std.tif", 2e-2)):
        with (
            rasterio.open(tmp_path / "pt" / name) as a,
            rasterio.open(tmp_path / "ort" / name) as b,
        ):
            np.testing.assert_allclose(b.read(), a.read(), rtol=1e-4, atol=atol, equal_nan=True)

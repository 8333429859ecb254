"""Whole-scene evaluation (issue 36, item 4): ``eofm test --tiled`` / ``eval.tiled`` scores
the test split's scenes through ``eofm predict``'s streaming engine.

The class map it scores is the one ``eofm predict`` writes with the same tile, overlap and
TTA, pixel for pixel; its metrics are those of the maps against the labels (computed here
with numpy from the files); at one tile per chip it agrees with the chip-wise test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from eofm.cli import main
from tests.runs import make_run_dir
from tests.test_training import flood_root  # noqa: F401 - fixture reuse

IGNORE, NODATA = -1, 255


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny run whose maps hold both classes (its head sharpened, its bias removed)."""
    run_dir = make_run_dir(
        tmp_path_factory.mktemp("tiled") / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0]
    )
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"]["model.head.1.weight"] *= 50
    state["state_dict"]["model.head.1.bias"].zero_()
    torch.save(state, checkpoint)
    return run_dir


def _data(root: Path) -> list[str]:
    return [f"data.root={root}", "data.split_csv=null"]


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def _metrics_from_files(maps: list[Path], labels: list[Path], names: list[str]) -> dict:
    """mIoU, accuracy, mF1, IoU and F1 per class, counted pixel by pixel from the files."""
    predicted = np.concatenate([_read(p).ravel() for p in maps]).astype(int)
    truth = np.concatenate([_read(p).ravel() for p in labels]).astype(int)
    scored = (truth != IGNORE) & (predicted != NODATA)
    predicted, truth = predicted[scored], truth[scored]
    out, ious, f1s = {}, [], []
    for c, name in enumerate(names):
        tp = int(np.sum((predicted == c) & (truth == c)))
        fp = int(np.sum((predicted == c) & (truth != c)))
        fn = int(np.sum((predicted != c) & (truth == c)))
        iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        out[f"test/IoU_{name}"], out[f"test/F1_{name}"] = iou, f1
        ious.append(iou)
        f1s.append(f1)
    out["test/mIoU"], out["test/mF1"] = float(np.mean(ious)), float(np.mean(f1s))
    out["test/accuracy"] = float(np.mean(predicted == truth))
    return out


@pytest.mark.parametrize("tta", [[], ["--tta", "flip"]], ids=["plain", "tta-flip"])
def test_tiled_test_scores_the_maps_predict_writes(
    run: Path,
    flood_root: Path,  # noqa: F811
    tmp_path: Path,
    tta: list[str],
) -> None:
    maps, predicted = tmp_path / "maps", tmp_path / "predicted"
    output = tmp_path / "tiled.json"
    argv = ["test", str(run), *_data(flood_root), "--tiled", "32,8", *tta]
    assert main([*argv, "--maps", str(maps), "--output", str(output)]) == 0
    payload = json.loads(output.read_text())
    assert payload["protocol"] == {
        "tiled": {"tile": 32, "overlap": 8, "tta": "flip" if tta else "none"}
    }
    chips = payload["test_chips"]
    assert chips
    images = [flood_root / "S1Hand" / f"{c}_S1Hand.tif" for c in chips]
    labels = [flood_root / "LabelHand" / f"{c}_LabelHand.tif" for c in chips]
    predict = ["predict", "--model", str(run), *map(str, images), "--out", str(predicted)]
    assert main([*predict, "--tile", "32", "--overlap", "8", *tta, "--no-progress"]) == 0
    scored = sorted(maps.glob("*.tif"))
    assert [p.name for p in scored] == sorted(p.name for p in images)
    for map_path in scored:  # (a) the scored map is predict's, pixel for pixel
        np.testing.assert_array_equal(_read(map_path), _read(predicted / map_path.name))
    both = np.concatenate([_read(p).ravel() for p in scored])
    assert {0, 1} <= set(np.unique(both).tolist()), "the maps should hold both classes"
    names = payload["confusion"]["classes"]
    expected = _metrics_from_files(scored, labels, names)  # (b) metrics of maps vs labels
    assert set(payload["metrics"]) == set(expected)
    for key, value in expected.items():
        assert payload["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_one_tile_per_chip_agrees_with_the_chip_wise_test(
    run: Path,
    flood_root: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A 64 px tile over a 64 px chip sees what the chip-wise test sees: the same scores
    under the same names (the chip-wise test adds its loss)."""
    chips, tiled = tmp_path / "chips.json", tmp_path / "tiled.json"
    assert main(["test", str(run), *_data(flood_root), "--output", str(chips)]) == 0
    argv = ["test", str(run), *_data(flood_root), "eval.tiled.tile=64", "eval.tiled.overlap=0"]
    assert main([*argv, "--output", str(tiled)]) == 0
    chip_wise, whole = json.loads(chips.read_text()), json.loads(tiled.read_text())
    assert whole["test_chips"] == chip_wise["test_chips"]
    assert "protocol" not in chip_wise
    assert whole["confusion"] == chip_wise["confusion"]
    assert set(chip_wise["metrics"]) - set(whole["metrics"]) == {"test/loss"}
    for key, value in whole["metrics"].items():
        assert value == pytest.approx(chip_wise["metrics"][key], abs=1e-6), key


def test_a_time_location_model_gets_each_chips_date() -> None:
    """The chip-wise test feeds a TL model (year, day of year) from the event metadata;
    the tiled test hands the engine the same day (Nigeria's flood: 2018, day 264, the
    date make demo gives eofm predict)."""
    from types import SimpleNamespace

    from eofm.families.segmentation import _chip_date

    dated = {"Nigeria_812045": {"temporal": (2018, 264)}, "Undated": {"temporal": None}}
    datamodule = SimpleNamespace(coords=dated, uses_coords={"time": True})
    assert _chip_date(datamodule, "Nigeria_812045") == "2018-09-21"
    assert _chip_date(datamodule, "Undated") is None
    datamodule.uses_coords = {"time": False}
    assert _chip_date(datamodule, "Nigeria_812045") is None

"""The Sen1Floods11 data layer on the real chips in ../shared/data/sen1floods11."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from eofm.data.sen1floods11 import (
    Sen1Floods11DataModule,
    find_sen1floods11_root,
    source_for_bands,
)
from eofm.data.splits import chip_event, read_split_csv, split_by_event
from eofm.errors import EofmError
from eofm.lightning_tasks.segmentation import SegmentationTask
from tests.realdata import CHIPS, SHARED, crop_chip

ALL_CHIPS = sorted(p.name.removesuffix("_S1Hand.tif") for p in (SHARED / "S1Hand").glob("*.tif"))


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """Every real chip (edge cases included), cropped to 64 px around the centre."""
    root = tmp_path_factory.mktemp("s1f11")
    for chip in ALL_CHIPS:
        for folder in ("S1Hand", "LabelHand"):
            crop_chip(
                SHARED / folder / f"{chip}_{folder}.tif", root / folder / f"{chip}_{folder}.tif"
            )
    return root


def test_real_chips_are_all_there() -> None:
    assert len(ALL_CHIPS) == 8 and set(CHIPS) <= set(ALL_CHIPS)


def test_official_v11_tree_is_found(tmp_path: Path, small_root: Path) -> None:
    hand = tmp_path / "v1.1" / "data" / "flood_events" / "HandLabeled"
    hand.mkdir(parents=True)
    for folder in ("S1Hand", "LabelHand"):
        (hand / folder).symlink_to(small_root / folder)
    assert find_sen1floods11_root(tmp_path) == hand
    assert find_sen1floods11_root(tmp_path / "v1.1") == hand
    assert find_sen1floods11_root(hand) == hand
    dm = Sen1Floods11DataModule(tmp_path, ["VV", "VH"], mean=None, std=None, crop_size=32)
    listed = {c for chips in dm.splits.values() for c in chips}
    assert listed | set(dm.excluded) == set(ALL_CHIPS)


def test_split_by_event_is_deterministic_and_disjoint() -> None:
    shuffled = ALL_CHIPS[:]
    random.Random(3).shuffle(shuffled)
    a, b = split_by_event(ALL_CHIPS), split_by_event(shuffled)
    assert a == b
    events = {s: {chip_event(c) for c in chips} for s, chips in a.items()}
    assert all(events.values()), events  # >= 3 events: every split has one
    assert not (events["train"] & events["val"]) and not (events["train"] & events["test"])
    assert not (events["val"] & events["test"])
    assert sorted(c for chips in a.values() for c in chips) == ALL_CHIPS
    assert chip_event("Sri-Lanka_534068") == "Sri-Lanka"


def test_split_csvs_are_read_and_checked(tmp_path: Path, small_root: Path) -> None:
    good = tmp_path / "train.csv"
    good.write_text(
        "India_900498_S1Hand.tif,India_900498_LabelHand.tif\n\nSpain_6860600_S1Hand.tif,Spain_6860600_LabelHand.tif\n"
    )
    assert read_split_csv(good) == ["India_900498", "Spain_6860600"]
    bad = tmp_path / "bad.csv"
    bad.write_text("India_900498_S1Hand.tif,x\nnot-a-chip.png,y\n")
    with pytest.raises(EofmError, match=r"bad.csv, line 2"):
        read_split_csv(bad)
    ghost = tmp_path / "ghost.csv"
    ghost.write_text("Atlantis_1_S1Hand.tif,Atlantis_1_LabelHand.tif\n")
    splits = {"train": str(good), "val": str(good), "test": str(ghost)}
    with pytest.raises(EofmError, match="Atlantis_1"):
        Sen1Floods11DataModule(small_root, ["VV", "VH"], mean=None, std=None, split_csv=splits)


def test_band_sources() -> None:
    assert source_for_bands(["VV", "VH"]) == ("S1Hand", [1, 2])
    assert source_for_bands(["VH"]) == ("S1Hand", [2])
    hls = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]
    assert source_for_bands(hls) == ("S2Hand", [2, 3, 4, 9, 12, 13])  # B2 B3 B4 B8A B11 B12
    with pytest.raises(EofmError, match="mixes"):
        source_for_bands(["VV", "RED"])
    with pytest.raises(EofmError, match="'RDE'"):
        source_for_bands(["RDE"])


def test_nodata_is_masked_and_edge_chips_reported(small_root: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="eofm"):
        dm = Sen1Floods11DataModule(
            small_root,
            ["VV", "VH"],
            mean=None,
            std=None,
            crop_size=None,
            split_fractions=(0.6, 0.2, 0.2),
        )
    assert dm.excluded["Paraguay_34417"] == "image entirely no data"
    assert dm.excluded["Ghana_83483"] == "label entirely no data (-1)"
    assert "Paraguay_34417" in caplog.text and "Ghana_83483" in caplog.text
    assert "Paraguay_34417" not in dm.splits["train"] and "Ghana_83483" not in dm.splits["train"]
    assert all(np.isfinite(dm.mean)) and all(s > 0 for s in dm.std)

    # Nigeria has scattered NaN pixels in the full chip: find them and check the sample
    with rasterio.open(SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif") as ds:
        nan_rows, nan_cols = np.nonzero(np.isnan(ds.read(1)))
    assert nan_rows.size
    from eofm.data.sen1floods11 import Sen1Floods11

    dataset = Sen1Floods11(
        SHARED, ["Nigeria_812045", "Paraguay_34417"], ["VV", "VH"], dm.mean, dm.std
    )
    nigeria, paraguay = dataset[0], dataset[1]
    assert torch.isfinite(nigeria["image"]).all()
    assert (nigeria["mask"][nan_rows, nan_cols] == -1).all()
    assert torch.isfinite(paraguay["image"]).all() and (paraguay["mask"] == -1).all()


def test_loss_is_finite_when_no_pixel_is_labelled() -> None:
    task = SegmentationTask(torch.nn.Identity(), class_names=["a", "b"], loss="ce+dice")
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    loss = task.compute_loss(logits, torch.full((2, 8, 8), -1))
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    partly = torch.full((2, 8, 8), -1)
    partly[0, :4] = 1
    assert torch.isfinite(task.compute_loss(logits, partly))


def test_crops_pad_and_eval_padding(small_root: Path) -> None:
    dm = Sen1Floods11DataModule(
        small_root,
        ["VV", "VH"],
        mean=[0, 0],
        std=[1, 1],
        crop_size=96,
        eval_crop_size=None,
        batch_size=2,
        pad_multiple=48,
    )
    sample = dm.dataset("train")[0]
    assert sample["image"].shape == (2, 96, 96)  # 64 px chip padded to the crop
    assert (sample["mask"][64:, :] == -1).all()
    evaluation = dm.dataset("val")[0]
    assert evaluation["image"].shape == (2, 96, 96)  # padded to a multiple of 48
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[1:] == (2, 96, 96) and batch["mask"].dtype == torch.int64


def test_s2_chip_band_selection(tmp_path: Path) -> None:
    root = tmp_path / "HandLabeled"
    crop_chip(
        SHARED / "LabelHand" / "India_900498_LabelHand.tif",
        root / "LabelHand" / "India_900498_LabelHand.tif",
    )
    with rasterio.open(root / "LabelHand" / "India_900498_LabelHand.tif") as label:
        profile = label.profile | {"count": 13, "dtype": "uint16", "nodata": 0}
    data = np.stack([np.full((64, 64), 100 * (b + 1), dtype=np.uint16) for b in range(13)])
    data[:, 0, 0] = 0
    (root / "S2Hand").mkdir()
    with rasterio.open(root / "S2Hand" / "India_900498_S2Hand.tif", "w", **profile) as out:
        out.write(data)
    from eofm.data.sen1floods11 import Sen1Floods11

    sample = Sen1Floods11(
        root, ["India_900498"], ["RED", "NIR_NARROW", "SWIR_2"], [0, 0, 0], [1, 1, 1]
    )[0]
    assert sample["image"][:, 5, 5].tolist() == [400.0, 900.0, 1300.0]  # B4, B8A, B12
    assert sample["mask"][0, 0] == -1 and sample["image"][:, 0, 0].tolist() == [0.0, 0.0, 0.0]

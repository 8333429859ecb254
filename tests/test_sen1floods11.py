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


S1S2_BANDS = ["VH", "RED", "VV", "SWIR_2"]  # S1 and S2 bands interleaved, on purpose


@pytest.fixture(scope="module")
def s1s2_root(tmp_path_factory) -> Path:
    """Real S1Hand chips and labels (64 px crops) with S2Hand chips in the real format.
    The real Nigeria chip's scattered NaN pixels lie outside the crop: a few are set."""
    from tests.realdata import make_s1s2_chips

    root = make_s1s2_chips(tmp_path_factory.mktemp("s1s2") / "HandLabeled")
    with rasterio.open(root / "S1Hand" / "Nigeria_812045_S1Hand.tif", "r+") as ds:
        vv = ds.read(1)
        vv[20, 30:34] = np.nan
        ds.write(vv, 1)
    return root


def test_s1_and_s2_bands_are_stacked_in_the_order_given(s1s2_root: Path) -> None:
    """Mixed data.bands read each chip's S1Hand and S2Hand files: the image holds the
    bands in data.bands order, each normalised by its own mean/std; a pixel is masked
    where either file has no data (S1Hand NaN, S2Hand its nodata value 0)."""
    mean, std = [-20.0, 1000.0, -10.0, 2000.0], [5.0, 500.0, 4.0, 800.0]
    dm = Sen1Floods11DataModule(
        s1s2_root, S1S2_BANDS, mean=mean, std=std, crop_size=None, split_fractions=(0.6, 0.2, 0.2)
    )
    assert dm.folders == ["S1Hand", "S2Hand"] and dm.image_bands == S1S2_BANDS
    chip = "Nigeria_812045"  # NaN pixels in S1Hand
    dataset = dm.chips_class({chip: dm.pairs[chip]}, dm.indexes, dm.mean, dm.std, pad_multiple=1)
    sample = dataset[0]
    with (
        rasterio.open(s1s2_root / "S1Hand" / f"{chip}_S1Hand.tif") as s1,
        rasterio.open(s1s2_root / "S2Hand" / f"{chip}_S2Hand.tif") as s2,
    ):
        vv, vh = s1.read().astype(np.float32)
        s2_bands = s2.read().astype(np.float32)
    raw = np.stack([vh, s2_bands[3], vv, s2_bands[12]])  # B4 = RED, B12 = SWIR_2
    valid = np.isfinite(vv) & np.isfinite(vh) & (s2_bands[[3, 12]] != 0).all(axis=0)
    assert (~np.isfinite(vv)).any() and (~valid).sum() > (~np.isfinite(vv)).sum()
    expected = (raw - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[
        :, None, None
    ]
    image, mask = sample["image"].numpy(), sample["mask"].numpy()
    assert np.allclose(image[:, valid], expected[:, valid], atol=1e-5)
    assert (mask[~valid] == -1).all() and (image[:, ~valid] == 0).all()
    with rasterio.open(s1s2_root / "LabelHand" / f"{chip}_LabelHand.tif") as label:
        assert np.array_equal(mask[valid], label.read(1)[valid])


def test_s1s2_cache_fingerprint_names_the_chips_own_files(s1s2_root: Path) -> None:
    """The stacks are rewritten per process; the latent cache keys on the chips' files."""
    dm = Sen1Floods11DataModule(s1s2_root, S1S2_BANDS, mean=[0] * 4, std=[1] * 4, crop_size=32)
    files = dm.fingerprint("train")["files"]
    chip = dm.splits["train"][0]
    assert files[:3] == [
        str(s1s2_root / "S1Hand" / f"{chip}_S1Hand.tif"),
        str(s1s2_root / "S2Hand" / f"{chip}_S2Hand.tif"),
        str(s1s2_root / "LabelHand" / f"{chip}_LabelHand.tif"),
    ]


def test_s1s2_rasters_on_different_grids_are_refused(tmp_path: Path) -> None:
    """A chip whose S2Hand raster is shifted by one pixel from its S1Hand one: one error
    naming both files (the real files' last-digit differences pass)."""
    from tests.realdata import make_s1s2_chips

    root = make_s1s2_chips(tmp_path / "HandLabeled", count=3)
    shifted = root / "S2Hand" / "India_900498_S2Hand.tif"
    with rasterio.open(shifted) as ds:
        profile, data = ds.profile, ds.read()
    profile["transform"] = profile["transform"] @ rasterio.Affine.translation(1, 0)
    with rasterio.open(shifted, "w", **profile) as out:
        out.write(data)
    with pytest.raises(EofmError, match="different grids") as info:
        Sen1Floods11DataModule(root, S1S2_BANDS, mean=[0] * 4, std=[1] * 4, crop_size=32)
    assert str(shifted) in str(info.value)
    assert str(root / "S1Hand" / "India_900498_S1Hand.tif") in str(info.value)


PREFLIGHT = r"""
import contextlib, io, json, sys
from eofm.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    rc = main(json.loads(sys.argv[1]))
heavy = [m for m in ("torch", "lightning", "timm", "peft", "torchgeo") if m in sys.modules]
print(json.dumps({"rc": rc, "stderr": err.getvalue(), "heavy": heavy}))
"""


@pytest.mark.parametrize("listed", [False, True], ids=["found", "in_split_csv"])
def test_a_chip_without_its_s2_partner_fails_before_torch(tmp_path: Path, listed: bool) -> None:
    """S1 + S2 bands need both files of each chip used: a chip found in S1Hand (or listed
    by an official split CSV) without its S2Hand file is one error naming that file,
    from file lists alone (no torch, no model)."""
    import json
    import subprocess
    import sys

    from tests.realdata import make_s1s2_chips

    root = make_s1s2_chips(tmp_path / "HandLabeled")
    lonely = root / "S2Hand" / "Spain_6860600_S2Hand.tif"
    lonely.unlink()
    args = ["fit", "sen1floods11_s1s2_terramind_v1_base", f"data.root={root}",
            "--run-dir", str(tmp_path / "run")]  # fmt: skip
    if listed:
        for split, chips in {"train": ["Ghana_97059", "India_900498"],
                             "val": ["Nigeria_812045"], "test": ["Spain_6860600"]}.items():  # fmt: skip
            rows = "".join(f"{c}_S1Hand.tif,{c}_LabelHand.tif\n" for c in chips)
            (root / f"flood_{split}_data.csv").write_text(rows)
        args.append(
            "data.split_csv={train: flood_train_data.csv, val: flood_val_data.csv, "
            "test: flood_test_data.csv}"
        )
    proc = subprocess.run(
        [sys.executable, "-c", PREFLIGHT, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 2, result
    assert f"{lonely} does not exist" in result["stderr"]
    assert ("lists chip Spain_6860600" in result["stderr"]) == listed
    assert result["heavy"] == []
    assert not (tmp_path / "run").exists()

"""Time and location coordinates for TL backbones, from the data to the encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from eofm.cli import main
from eofm.data.coords import parse_date
from eofm.data.sen1floods11 import Sen1Floods11DataModule, event_dates
from tests.hls import make_hls_root
from tests.realdata import SHARED
from tests.test_training import flood_root, overrides  # noqa: F401 - fixture reuse


def test_dates_parse_to_year_and_day_of_year() -> None:
    assert parse_date("2018/09/18") == (2018, 261)
    assert parse_date("2020-02-29") == (2020, 60)
    assert parse_date("2018:09:18 10:30:00") == (2018, 261)


def test_sen1floods11_samples_carry_event_date_and_chip_centre(flood_root: Path) -> None:
    root = flood_root.parent / "with-metadata"
    if not root.exists():
        shutil.copytree(flood_root, root)
        shutil.copy(SHARED / "Sen1Floods11_Metadata.geojson", root)
    dm = Sen1Floods11DataModule(
        root,
        ["VV", "VH"],
        mean=None,
        std=None,
        crop_size=32,
        temporal_coords=True,
        location_coords=True,
    )
    assert dm.uses_coords == {"time": True, "location": True, "gsd": False}
    batch = next(iter(dm.val_dataloader()))
    chip = batch["chip"][0]
    expected = event_dates(root, "S1Hand", [chip])[chip]
    assert batch["temporal_coords"][0].tolist() == [list(map(float, expected))]
    lat, lon = batch["location_coords"][0].tolist()
    assert -40 < lat < 40 and -100 < lon < 100  # the events' countries, in degrees


def test_missing_dates_are_named_and_time_is_dropped(flood_root: Path, caplog) -> None:
    dm = Sen1Floods11DataModule(
        flood_root,
        ["VV", "VH"],
        mean=None,
        std=None,
        crop_size=32,
        temporal_coords=True,
        location_coords=True,
    )
    assert dm.uses_coords == {"time": False, "location": True, "gsd": False}  # no metadata
    assert "acquisition date" in caplog.text
    sample = dm.dataset("train")[0]
    assert "temporal_coords" not in sample and sample["location_coords"].shape == (2,)


def test_coordinates_reach_the_encoder_and_change_its_output() -> None:
    from eofm.backbones.loading import load_backbone

    torch.manual_seed(0)
    encoder = load_backbone("prithvi_eo_v2_tiny_tl", bands=["VV", "VH"], pretrained=False).eval()
    seen = {}
    original = encoder.location_embed_enc.forward
    encoder.location_embed_enc.forward = lambda c: (
        seen.setdefault("location", c) is not None and original(c)
    )
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        plain, _ = encoder(x)
        placed, _ = encoder(x, torch.tensor([[[2018.0, 261.0]]]), torch.tensor([[6.5, 3.4]]))
    assert torch.equal(seen["location"], torch.tensor([[6.5, 3.4]]))
    assert (plain[-1] - placed[-1]).abs().max() > 1e-4


def test_tl_run_records_and_uses_coordinates_end_to_end(tmp_path: Path, caplog) -> None:
    root = make_hls_root(tmp_path / "hls")
    run = tmp_path / "run"
    args = [
        f"data.root={root}",
        "backbone.pretrained=false",
        "decoder.channels=16",
        "data.crop_size=32",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    ]
    assert main(["fit", "hls_burn_scars_tiny", *args, "--run-dir", str(run)]) == 0
    coords = json.loads((run / "model.json").read_text())["backbone"]["coords"]
    assert coords == {"time": True, "location": True, "gsd": False}  # dates from HLS names
    scene = next((root / "validation").glob("*_merged.tif"))
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                "--model",
                str(run),
                str(scene),
                "--out",
                str(out),
                "--tile",
                "32",
                "--overlap",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "records none" in caplog.text  # the scene's tags hold no date: said once
    dated = tmp_path / "dated"
    assert (
        main(
            [
                "predict",
                "--model",
                str(run),
                str(scene),
                "--out",
                str(dated),
                "--tile",
                "32",
                "--overlap",
                "0",
                "--no-progress",
                "--no-quicklook",
                "--date",
                "2019-08-28",
                "--probabilities",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "fit",
                "hls_burn_scars_tiny",
                *args,
                "backbone.coords=false",
                "--run-dir",
                str(tmp_path / "off"),
            ]
        )
        == 0
    )
    off = json.loads((tmp_path / "off" / "model.json").read_text())["backbone"]["coords"]
    assert off == {"time": False, "location": False, "gsd": False}


def test_bad_date_is_an_argument_error(tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "predict",
                "--model",
                "x",
                str(tmp_path / "a.tif"),
                "--out",
                str(tmp_path / "o"),
                "--date",
                "2019-13-40",
            ]
        )
        == 2
    )
    assert "--date" in capsys.readouterr().err

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


def _moved_chip(root: Path, chip: str, name: str, lon: float, lat: float) -> None:
    """The real chip ``chip`` (S1Hand and LabelHand, cropped to 64 px) renamed ``name`` and
    moved, pixel size kept, so that its centre lies at ``lon``, ``lat``."""
    import rasterio
    from affine import Affine

    from tests.realdata import crop_chip

    for folder in ("S1Hand", "LabelHand"):
        dst = root / folder / f"{name}_{folder}.tif"
        crop_chip(SHARED / folder / f"{chip}_{folder}.tif", dst)
        with rasterio.open(dst, "r+") as ds:
            t = ds.transform
            ds.transform = Affine(
                t.a, 0, lon - t.a * ds.width / 2, 0, t.e, lat - t.e * ds.height / 2
            )


def _cambodia_centre() -> tuple[float, float]:
    from shapely.geometry import shape

    features = json.loads((SHARED / "Sen1Floods11_Metadata.geojson").read_text())["features"]
    cambodia = next(f for f in features if f["properties"]["location"] == "Cambodia")
    point = shape(cambodia["geometry"]).representative_point()
    return point.x, point.y


def test_mekong_chips_are_matched_to_their_event_by_place(tmp_path: Path) -> None:
    """Issue 34 item 3: the release names Mekong chips ``Mekong_*``, their event
    ``Cambodia``; the chip's footprint inside the event polygon gives its date."""
    root = tmp_path / "HandLabeled"
    _moved_chip(root, "Ghana_97059", "Mekong_333434", *_cambodia_centre())
    _moved_chip(root, "Ghana_97059", "Atlantis_1", -30.0, 0.0)  # in no event's polygon
    shutil.copy(SHARED / "Sen1Floods11_Metadata.geojson", root)
    dates = event_dates(root, "S1Hand", ["Mekong_333434", "Atlantis_1"])
    assert dates == {"Mekong_333434": parse_date("2018/08/05"), "Atlantis_1": None}


def test_an_undated_chip_goes_without_time_alone(flood_root: Path, tmp_path: Path) -> None:
    """Issue 34 item 3: one undated chip no longer switches temporal coordinates off for
    the run; its own sample has none (NaN in the batch), and the encoder adds no temporal
    embedding to it alone."""
    from eofm.backbones.loading import load_backbone
    from eofm.data.chips import collate_chips

    root = tmp_path / "HandLabeled"
    shutil.copytree(flood_root, root)
    shutil.copy(SHARED / "Sen1Floods11_Metadata.geojson", root)
    _moved_chip(root, "India_900498", "Atlantis_1", -30.0, 0.0)
    dm = Sen1Floods11DataModule(
        root, ["VV", "VH"], mean=None, std=None, crop_size=32, temporal_coords=True
    )
    assert dm.uses_coords["time"] is True
    samples = {}
    for split in ("train", "val", "test"):
        ds = dm.dataset(split)
        for i in range(len(ds)):
            sample = ds[i]
            samples.setdefault(sample["chip"], sample)
    undated, dated = samples["Atlantis_1"], samples["Nigeria_812045"]
    assert "temporal_coords" not in undated and "temporal_coords" in dated
    batch = collate_chips([dated, undated])
    assert torch.isnan(batch["temporal_coords"][1]).all()
    assert batch["temporal_coords"][0].tolist() == dated["temporal_coords"].tolist()
    torch.manual_seed(0)
    encoder = load_backbone("prithvi_eo_v2_tiny_tl", bands=["VV", "VH"], pretrained=False).eval()
    with torch.no_grad():
        both, _ = encoder(batch["image"], batch["temporal_coords"])
        plain, _ = encoder(batch["image"])
        alone, _ = encoder(batch["image"][:1], batch["temporal_coords"][:1])
    torch.testing.assert_close(both[-1][1], plain[-1][1])  # no time for the undated one
    torch.testing.assert_close(both[-1][0], alone[-1][0])  # its own date for the dated one
    assert (both[-1][0] - plain[-1][0]).abs().max() > 1e-4

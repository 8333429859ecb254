"""Evaluation scientists can trust: region-held-out splits, calibration, uncertainty maps,
ensembles, pictures and the report (real Sen1Floods11 chips, cropped to 64 px)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eofm.cli import main
from tests.realdata import SHARED
from tests.runs import make_run_dir
from tests.test_training import flood_root, overrides  # noqa: F401 - fixture reuse

NIGERIA = SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif"
ASIA_HELD_OUT = "{by: continent, test: [Asia], val: [Europe], id_fraction: 0.5}"


def assert_picture(path: Path, min_side: int = 150) -> None:
    """A real picture: a PNG of some size whose pixels are not all alike."""
    from matplotlib.image import imread

    assert path.is_file(), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert min(image.shape[:2]) >= min_side, image.shape
    assert float(image[..., :3].std()) > 0.02, f"{path} is blank"


@pytest.fixture(scope="module")
def chips_by_continent(flood_root: Path, tmp_path_factory) -> Path:  # noqa: F811
    """The test chips plus Ghana_53713 (all dry land): two usable African chips, one to
    train on and one kept as the in-distribution test."""
    import shutil

    from tests.realdata import crop_chip

    root = tmp_path_factory.mktemp("continents")
    shutil.copytree(flood_root, root, dirs_exist_ok=True)
    for folder, kind in (("S1Hand", "S1Hand"), ("LabelHand", "LabelHand")):
        crop_chip(
            SHARED / folder / f"Ghana_53713_{kind}.tif", root / folder / f"Ghana_53713_{kind}.tif"
        )
    return root


@pytest.fixture(scope="module")
def held_out_run(chips_by_continent: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("regions") / "run"
    args = overrides(chips_by_continent, **{"data.split": ASIA_HELD_OUT})
    assert main(["fit", "demo", *args, "--run-dir", str(run)]) == 0
    return run


def test_a_held_out_continent_gets_its_own_table(held_out_run: Path, capsys) -> None:
    assert main(["test", str(held_out_run)]) == 0
    out = capsys.readouterr().out
    assert "per region" in out and "held-out" in out and "gap" in out
    payload = json.loads((held_out_run / "test_metrics.json").read_text())
    rows = payload["regions"]["rows"]
    held_out = {r["region"] for r in rows if r["role"] == "held-out"}
    seen = {r["region"] for r in rows if r["role"] == "in-distribution"}
    assert held_out == {"Asia"} and seen == {"Africa"}
    asia = next(r for r in rows if r["region"] == "Asia")
    assert asia["chips"] == 2 and asia["pixels"] > 0  # India and Sri Lanka
    assert payload["test_chips"] == ["India_900498", "Sri-Lanka_534068"]
    summary = payload["regions"]["summary"]
    gap = summary["in-distribution"]["mIoU"] - summary["held-out"]["mIoU"]
    assert summary["gap"]["mIoU"] == pytest.approx(gap)
    for name in ("curves.png", "confusion.png", "reliability.png"):
        assert_picture(held_out_run / name)


def test_countries_and_latitude_bands_on_the_bundled_boundaries(flood_root: Path) -> None:  # noqa: F811
    from eofm.data.sen1floods11 import Sen1Floods11DataModule

    def module(split: dict) -> Sen1Floods11DataModule:
        return Sen1Floods11DataModule(
            flood_root, ["VV", "VH"], mean=None, std=None, split=split | {"id_fraction": 0}
        )

    dm = module({"by": "country", "test": ["India", "Sri Lanka"], "val": ["Spain"]})
    assert dm.regions["Sri-Lanka_534068"] == "Sri Lanka" and dm.regions["Ghana_97059"] == "Ghana"
    assert dm.splits["test"] == ["India_900498", "Sri-Lanka_534068"]
    assert dm.splits["val"] == ["Spain_6860600"]
    dm = module({"by": "latitude_band", "width": 10, "test": ["0-10N"], "val": ["20N-30N"]})
    assert dm.regions["Ghana_97059"] == "0-10N" and dm.regions["Paraguay_34417"] == "30S-20S"
    # Ghana_97059 (no labelled pixel in the crop) goes to no split
    assert set(dm.splits["test"]) == {"Sri-Lanka_534068", "Nigeria_812045"}


@pytest.mark.parametrize(
    ("split", "needle"),
    [
        ("{by: region, regions: REGIONS, column: name, test: [Asia]}", "has no column 'name'"),
        ("{by: continent, test: [Antarctica]}", "['Antarctica'] match no sample"),
        (
            "{by: continent, test: [Africa, Asia], val: [Europe]}",
            "leaves the train split",
        ),
        ("{by: continent, test: [Asia], val: [Asia]}", "in both test and val"),
        ("{by: basin, test: [Rhine]}", "data.split.by"),
    ],
)
def test_bad_region_splits_are_named_and_leave_nothing(
    flood_root: Path,  # noqa: F811
    tmp_path: Path,
    split: str,
    needle: str,
    capsys,
) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    regions = tmp_path / "basins.geojson"
    gpd.GeoDataFrame({"basin": ["all"]}, geometry=[box(-180, -90, 180, 90)], crs=4326).to_file(
        regions
    )
    run = tmp_path / "run"
    args = overrides(flood_root, **{"data.split": split.replace("REGIONS", str(regions))})
    code = main(["fit", "demo", *args, "--run-dir", str(run)])
    assert code in (1, 2)
    assert needle in capsys.readouterr().err and not run.exists()


@pytest.fixture(scope="module")
def overconfident_run(flood_root: Path, tmp_path_factory) -> Path:  # noqa: F811
    """A trained run whose logits are then multiplied by 40: far too sure of itself."""
    import torch

    run = tmp_path_factory.mktemp("calibration") / "run"
    assert main(["fit", "demo", *overrides(flood_root), "--run-dir", str(run)]) == 0
    path = run / "checkpoints" / "best.ckpt"
    state = torch.load(path, weights_only=True, map_location="cpu")
    for key in ("model.head.1.weight", "model.head.1.bias"):
        state["state_dict"][key] = state["state_dict"][key] * 40.0
    torch.save(state, path)
    return run


def test_calibration_lowers_the_validation_ece(
    overconfident_run: Path, tmp_path: Path, capsys
) -> None:
    assert main(["calibrate", str(overconfident_run)]) == 0
    record = json.loads((overconfident_run / "model.json").read_text())["calibration"]
    assert record["temperature"] > 2.0 and record["fitted_on"] == "val"
    assert record["after"]["ECE"] < record["before"]["ECE"]
    assert record["after"]["NLL"] < record["before"]["NLL"]
    assert "temperature" in capsys.readouterr().out
    assert main(["test", str(overconfident_run)]) == 0
    test = json.loads((overconfident_run / "test_metrics.json").read_text())["calibration"]
    assert test["temperature"] == pytest.approx(record["temperature"])
    assert {"uncalibrated", "calibrated"} <= set(test)
    # predict uses the temperature: the same classes, softer probabilities
    outputs = {}
    for label, run in (("calibrated", overconfident_run),):
        for probabilities in (False, True):
            out = tmp_path / f"{label}-{probabilities}"
            args = ["predict", "--model", str(run), str(NIGERIA), "--out", str(out)]
            assert (
                main([*args, "--no-progress", *(["--probabilities"] if probabilities else [])]) == 0
            )
            name = "_probabilities" if probabilities else ""
            with rasterio.open(out / f"Nigeria_812045_S1Hand{name}.tif") as ds:
                outputs[probabilities] = ds.read()
    probs, classes = outputs[True], outputs[False][0]
    valid = classes != 255
    assert np.array_equal(np.nanargmax(np.nan_to_num(probs, nan=-1), axis=0)[valid], classes[valid])
    assert float(np.nanmax(probs)) < 0.999  # uncalibrated, these saturate at 1
    report = tmp_path / "report.html"
    assert main(["report", str(overconfident_run), "--output", str(report)]) == 0
    assert "Temperature scaling" in report.read_text()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in ("meta", "br", "hr", "img", "link"):
            self.open.append(tag)

    def handle_endtag(self, tag) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()


def test_report_renders_offline_with_every_picture(held_out_run: Path, tmp_path: Path) -> None:
    import base64
    import io

    from matplotlib.image import imread

    out = tmp_path / "predictions"
    assert main(["test", str(held_out_run)]) == 0
    args = ["predict", "--model", str(held_out_run), str(NIGERIA), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    assert_picture(out / "Nigeria_812045_S1Hand.png")  # the map over the VV backdrop
    (held_out_run / "predictions").mkdir(exist_ok=True)
    (held_out_run / "predictions" / "Nigeria.png").write_bytes(
        (out / "Nigeria_812045_S1Hand.png").read_bytes()
    )
    assert main(["report", str(held_out_run)]) == 0
    text = (held_out_run / "report.html").read_text()
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.open, page.open  # every element closed
    assert "script" not in page.tags and "http://" not in text and "https://" not in text
    assert {"h1", "table", "pre", "img"} <= set(page.tags)
    assert len(page.images) == 4  # curves, confusion, reliability, the prediction
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        image = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert min(image.shape[:2]) > 100
    assert "Asia" in text and "held-out" in text and "gap" in text


def test_uncertainty_maps(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    common = ["predict", "--model", str(run), str(NIGERIA), "--no-progress", "--tile", "128"]
    assert main([*common, "--out", str(tmp_path / "e"), "--uncertainty", "entropy"]) == 0
    with rasterio.open(tmp_path / "e" / "Nigeria_812045_S1Hand_entropy.tif") as ds:
        entropy = ds.read(1)
        assert ds.dtypes[0] == "float32" and "entropy" in ds.descriptions[0]
    with rasterio.open(NIGERIA) as ds:
        invalid = ~np.isfinite(ds.read()).all(axis=0)
    assert np.isnan(entropy[invalid]).all()
    finite = entropy[~invalid]
    assert (finite >= 0).all() and (finite <= np.log(2) + 1e-6).all()
    assert main([*common, "--out", str(tmp_path / "t"), "--uncertainty", "tta"]) == 0
    with rasterio.open(tmp_path / "t" / "Nigeria_812045_S1Hand_mutual_information.tif") as ds:
        information = ds.read(1)[~invalid]
    assert (information >= 0).all() and (information <= np.log(2)).all()
    assert main([*common, "--out", str(tmp_path / "m"), "--uncertainty", "mc-dropout:4"]) == 0
    with rasterio.open(tmp_path / "m" / "Nigeria_812045_S1Hand_mutual_information.tif") as ds:
        information = ds.read(1)[~invalid]
    assert (information >= 0).all() and information.max() > 0  # the passes disagree
    assert main([*common, "--out", str(tmp_path / "x"), "--uncertainty", "mc-dropout:1"]) == 2
    # a run without dropout: MC dropout is refused before anything is written
    plain = make_run_dir(tmp_path / "plain", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0], dropout=0)
    no_dropout = ["predict", "--model", str(plain), str(NIGERIA), "--no-progress"]
    code = main([*no_dropout, "--out", str(tmp_path / "n"), "--uncertainty", "mc-dropout:4"])
    assert code == 2 and not any((tmp_path / "n").glob("*.tif"))


def test_ensemble_mean_probabilities_and_mutual_information(tmp_path: Path) -> None:
    runs = [
        make_run_dir(tmp_path / f"run{i}", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0], seed=i)
        for i in range(3)
    ]
    out = tmp_path / "out"
    args = ["ensemble", *map(str, runs), "--inputs", str(NIGERIA), "--out", str(out)]
    assert main([*args, "--no-progress", "--tile", "128"]) == 0
    with rasterio.open(out / "Nigeria_812045_S1Hand_probabilities.tif") as ds:
        mean = ds.read()
    with rasterio.open(out / "Nigeria_812045_S1Hand.tif") as ds:
        classes = ds.read(1)
    with rasterio.open(out / "Nigeria_812045_S1Hand_mutual_information.tif") as ds:
        information = ds.read(1)
    valid = classes != 255
    assert np.allclose(mean[:, valid].sum(axis=0), 1.0, atol=1e-4)
    assert np.array_equal(mean[:, valid].argmax(axis=0), classes[valid])
    assert (information[valid] >= 0).all() and information[valid].max() > 0
    # the members' own maps, averaged by hand, give the same mean (memory: one pass)
    singles = []
    for i, run in enumerate(runs):
        one = tmp_path / f"single{i}"
        predict = ["predict", "--model", str(run), str(NIGERIA), "--out", str(one)]
        assert main([*predict, "--no-progress", "--tile", "128", "--probabilities"]) == 0
        with rasterio.open(one / "Nigeria_812045_S1Hand_probabilities.tif") as ds:
            singles.append(ds.read())
    assert np.allclose(np.mean(singles, axis=0)[:, valid], mean[:, valid], atol=1e-5)


def test_an_ensemble_of_different_runs_is_refused(tmp_path: Path, capsys) -> None:
    s1 = make_run_dir(tmp_path / "s1", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    rgb = make_run_dir(tmp_path / "rgb", ["BLUE", "GREEN", "RED"], [9e3] * 3, [1.5e3] * 3)
    out = tmp_path / "out"
    code = main(["ensemble", str(s1), str(rgb), "--inputs", str(NIGERIA), "--out", str(out)])
    assert code == 2 and "different bands" in capsys.readouterr().err and not out.exists()

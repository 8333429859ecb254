"""``eofm predict``: streaming inference on real scenes (Sen1Floods11 chips, Landsat 8)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from eofm.atomic import atomic_output
from eofm.cli import main
from eofm.errors import EofmError
from eofm.families.restore import load_trained
from eofm.predict.engine import Predictor
from eofm.predict.grid import blend_weights, tile_starts
from eofm.predict.options import PredictOptions
from tests.realdata import SHARED
from tests.runs import make_run_dir

LANDSAT = SHARED.parent / "landsat" / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
NIGERIA = SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif"
PARAGUAY = SHARED / "S1Hand" / "Paraguay_34417_S1Hand.tif"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def s1_run(tmp_path_factory) -> Path:
    return make_run_dir(
        tmp_path_factory.mktemp("s1") / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0]
    )


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory) -> Path:
    return make_run_dir(
        tmp_path_factory.mktemp("rgb") / "run",
        ["BLUE", "GREEN", "RED"],
        [9000.0, 8500.0, 8000.0],
        [1500.0] * 3,
    )


def crop(src: Path, dst: Path, col: int, row: int, width: int, height: int, **changes) -> Path:
    with rasterio.open(src) as ds:
        window = Window(col, row, width, height)
        data = ds.read(window=window)
        profile = ds.profile | {
            "width": width,
            "height": height,
            "transform": ds.window_transform(window),
        }
        profile.update(tiled=False, **changes)
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        descriptions = ds.descriptions
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        for i, text in enumerate(descriptions, start=1):
            if text:
                out.set_band_description(i, text)
    return dst


def predict(*args: str) -> int:
    return main(["predict", *args, "--no-progress"])


def test_real_chip_georeferencing_and_nodata(s1_run: Path, tmp_path: Path) -> None:
    assert predict("--model", str(s1_run), str(NIGERIA), "--out", str(tmp_path)) == 0
    out = tmp_path / "Nigeria_812045_S1Hand.tif"
    with rasterio.open(NIGERIA) as src, rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.width, dst.height) == (
            src.crs,
            src.transform,
            src.width,
            src.height,
        )
        assert dst.dtypes[0] == "uint8" and dst.nodata == 255
        assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        invalid = ~np.isfinite(src.read()).all(axis=0)
        classes = dst.read(1)
    assert invalid.any()
    assert (classes[invalid] == 255).all() and set(np.unique(classes[~invalid])) <= {0, 1}
    assert (tmp_path / "Nigeria_812045_S1Hand.png").is_file()


def test_landsat_scene_many_tiles_exact_georef(rgb_run: Path, tmp_path: Path) -> None:
    assert (
        predict("--model", str(rgb_run), str(LANDSAT), "--out", str(tmp_path), "--batch-size", "16")
        == 0
    )
    out = tmp_path / f"{LANDSAT.stem}.tif"
    with rasterio.open(LANDSAT) as src, rasterio.open(out) as dst:
        assert src.count == 3 and (src.width, src.height) == (2041, 1860)
        assert (dst.crs, dst.transform, dst.width, dst.height) == (
            src.crs,
            src.transform,
            src.width,
            src.height,
        )
        assert dst.overviews(1)  # a real COG with overviews
        classes = dst.read(1)
    assert set(np.unique(classes)) <= {0, 1}


def naive_prediction(predictor: Predictor, path: Path, tile: int, overlap: int) -> np.ndarray:
    """Whole-scene reference: every tile into full-size accumulators (test only)."""
    from eofm.predict.scenes import SceneReader

    with rasterio.open(path) as ds:
        height, width = ds.height, ds.width
    reader = SceneReader(path, [1, 2, 3], predictor.trained.mean, predictor.trained.std, tile)
    acc, wsum = np.zeros((2, height, width)), np.zeros((height, width))
    weights = blend_weights(tile)
    stride = tile - overlap
    for r in tile_starts(height, tile, stride):
        for c in tile_starts(width, tile, stride):
            data, _ = reader.read(r, c)
            probs = predictor.stage.probabilities(data[None])[0]
            h, w = min(tile, height - r), min(tile, width - c)
            acc[:, r : r + h, c : c + w] += probs[:, :h, :w] * weights[:h, :w]
            wsum[r : r + h, c : c + w] += weights[:h, :w]
    reader.close()
    return (acc / wsum).argmax(axis=0)


@pytest.mark.parametrize(
    ("width", "height", "tile", "overlap", "band"),
    [(200, 150, 64, 16, 4096), (200, 150, 64, 16, 80), (100, 80, 224, 32, 4096)],
)
def test_streaming_equals_whole_scene_reference(
    rgb_run: Path, tmp_path: Path, monkeypatch, width, height, tile, overlap, band
) -> None:
    monkeypatch.setattr("eofm.predict.grid.COLUMN_BAND", band)  # 80: several column bands
    scene = crop(LANDSAT, tmp_path / "scene.tif", 700, 900, width, height)
    trained = load_trained(str(rgb_run))
    options = PredictOptions(tile=tile, overlap=overlap, batch_size=3, quicklook=False)
    result = Predictor(trained, options).predict(scene, tmp_path / "out")
    with rasterio.open(result.outputs[0]) as dst:
        streamed = dst.read(1)
        assert (dst.width, dst.height) == (width, height)  # smaller than a tile: padded, kept
    expected = naive_prediction(Predictor(trained, options), scene, tile, overlap)
    assert (streamed == expected).mean() > 0.999  # float summation order may flip a tie


def test_output_is_deterministic_and_never_silently_overwritten(
    s1_run: Path, tmp_path: Path
) -> None:
    args = ["--model", str(s1_run), str(NIGERIA), "--out", str(tmp_path), "--no-quicklook"]
    out = tmp_path / "Nigeria_812045_S1Hand.tif"
    assert predict(*args) == 0
    first = hashlib.sha256(out.read_bytes()).hexdigest()
    out.write_bytes(b"user data")  # an existing file is left alone without --overwrite
    assert predict(*args) == 0
    assert out.read_bytes() == b"user data"
    assert predict(*args, "--overwrite") == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == first
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_bands_matched_by_name_from_descriptions(s1_run: Path, tmp_path: Path) -> None:
    swapped = tmp_path / "swapped.tif"
    with rasterio.open(NIGERIA) as ds:
        data, profile = ds.read(), ds.profile
    with rasterio.open(swapped, "w", **profile) as out:
        out.write(data[::-1])
        out.set_band_description(1, "VH")
        out.set_band_description(2, "VV")
    assert (
        predict(
            "--model",
            str(s1_run),
            str(NIGERIA),
            str(swapped),
            "--out",
            str(tmp_path / "o"),
            "--no-quicklook",
        )
        == 0
    )
    with (
        rasterio.open(tmp_path / "o" / "swapped.tif") as a,
        rasterio.open(tmp_path / "o" / "Nigeria_812045_S1Hand.tif") as b,
    ):
        assert np.array_equal(a.read(), b.read())


def test_band_mismatch_lists_both_sides(rgb_run: Path, tmp_path: Path, capsys) -> None:
    assert predict("--model", str(rgb_run), str(NIGERIA), "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert "BLUE" in err and "VV" in err and str(NIGERIA) in err
    assert not (tmp_path / "o").exists()  # checked before the output folder is made
    assert (
        predict(
            "--model",
            str(rgb_run),
            str(LANDSAT),
            "--out",
            str(tmp_path / "o"),
            "--bands",
            "RED,GREEN",
        )
        == 1
    )
    assert "--bands names 2 bands" in capsys.readouterr().err


def test_corrupt_tiff_fails_without_output(s1_run: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(NIGERIA.read_bytes()[:2000])
    assert predict("--model", str(s1_run), str(bad), "--out", str(tmp_path / "o")) == 1
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # checked before the output folder is made


def test_no_crs_is_allowed_with_a_warning(rgb_run: Path, tmp_path: Path, caplog) -> None:
    scene = crop(LANDSAT, tmp_path / "nocrs.tif", 0, 0, 96, 96, crs=None)
    with rasterio.open(scene) as ds:
        assert ds.crs is None
    assert predict("--model", str(rgb_run), str(scene), "--out", str(tmp_path / "o")) == 0
    assert "has no CRS" in caplog.text
    assert (tmp_path / "o" / "nocrs.tif").is_file()


def test_all_nan_scene_gives_all_nodata_with_warning(s1_run: Path, tmp_path: Path, caplog) -> None:
    assert predict("--model", str(s1_run), str(PARAGUAY), "--out", str(tmp_path)) == 0
    with rasterio.open(tmp_path / "Paraguay_34417_S1Hand.tif") as ds:
        assert (ds.read(1) == 255).all()
    assert "no valid pixel" in caplog.text


def test_tiles_without_valid_pixels_skip_the_model(s1_run: Path, tmp_path: Path) -> None:
    trained = load_trained(str(s1_run))
    calls = []
    trained.model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    predictor = Predictor(trained, PredictOptions(tile=64, overlap=0, quicklook=False))
    predictor.predict(PARAGUAY, tmp_path / "nan")
    assert calls == []  # 64 tiles, all NaN: the network never ran
    predictor.predict(NIGERIA, tmp_path / "ok")
    assert sum(calls) == 64


def test_output_dir_that_is_a_file_is_an_error(s1_run: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("mine")
    assert predict("--model", str(s1_run), str(NIGERIA), "--out", str(blocker)) == 1
    assert str(blocker) in capsys.readouterr().err and blocker.read_text() == "mine"


def test_vectors_probabilities_and_tta(s1_run: Path, tmp_path: Path) -> None:
    import geopandas as gpd

    assert (
        predict(
            "--model",
            str(s1_run),
            str(NIGERIA),
            "--out",
            str(tmp_path / "v"),
            "--vector",
            "geojson",
        )
        == 0
    )
    import pyogrio

    geojson = tmp_path / "v" / "Nigeria_812045_S1Hand.geojson"
    # issue 34 item 13: the layer is named after the output, not its temporary file
    assert [layer for layer, _ in pyogrio.list_layers(geojson)] == ["Nigeria_812045_S1Hand"]
    polygons = gpd.read_file(geojson)
    with rasterio.open(tmp_path / "v" / "Nigeria_812045_S1Hand.tif") as ds:
        water = int((ds.read(1) == 1).sum())
    assert water > 0 and len(polygons) > 0
    assert polygons.crs.to_epsg() == 4326
    assert set(polygons["class_name"]) == {"water"}
    # ~10 m pixels: total polygon area within 20% of the pixel count x 100 m²
    assert polygons["area_m2"].sum() == pytest.approx(water * 100, rel=0.2)

    assert (
        predict(
            "--model",
            str(s1_run),
            str(NIGERIA),
            "--out",
            str(tmp_path / "p"),
            "--probabilities",
            "--vector",
            "geoparquet",
            "--tta",
            "flip",
        )
        == 0
    )
    # issue 34 item 12: the probabilities go beside the class map, named by class
    with rasterio.open(tmp_path / "p" / "Nigeria_812045_S1Hand.tif") as ds:
        assert ds.count == 1 and ds.dtypes[0] == "uint8"
        classes = ds.read(1)
    with rasterio.open(tmp_path / "p" / "Nigeria_812045_S1Hand_probabilities.tif") as ds:
        assert ds.count == 2 and ds.dtypes[0] == "float32"
        assert list(ds.descriptions) == ["not_water", "water"]
        probs = ds.read()
    # issue 34 item 14: GeoParquet is written as .parquet, asked for as parquet or geoparquet
    assert (tmp_path / "p" / "Nigeria_812045_S1Hand.parquet").is_file()
    assert np.array_equal(
        np.nan_to_num(probs, nan=-1).argmax(0)[classes != 255], classes[classes != 255]
    )
    finite = np.isfinite(probs).all(axis=0)
    assert finite.any() and (~finite).any()
    np.testing.assert_allclose(probs[:, finite].sum(axis=0), 1.0, atol=1e-4)


def test_shards_split_inputs_across_two_processes(s1_run: Path, tmp_path: Path) -> None:
    inputs = [
        str(NIGERIA),
        str(ROOT / "samples" / "sen1floods11" / "S1Hand" / "India_900498_S1Hand.tif"),
    ]
    code = "import sys; from eofm.cli import main; sys.exit(main(sys.argv[1:]))"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "predict",
                "--model",
                str(s1_run),
                *inputs,
                "--out",
                str(tmp_path),
                "--shard",
                f"{i}/2",
                "--no-progress",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert all("1 of 2 scene(s)" in o[0] for o in outs)
    assert (tmp_path / "Nigeria_812045_S1Hand.tif").is_file() and (
        tmp_path / "India_900498_S1Hand.tif"
    ).is_file()


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "x.tif"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_internal_mask_marks_outside_the_data(rgb_run: Path, tmp_path: Path) -> None:
    scene = crop(LANDSAT, tmp_path / "masked.tif", 600, 600, 96, 96)
    with rasterio.open(scene, "r+") as ds:
        mask = np.full((96, 96), 255, np.uint8)
        mask[:, :40] = 0  # left part outside the valid data
        ds.write_mask(mask)
    assert predict("--model", str(rgb_run), str(scene), "--out", str(tmp_path / "o")) == 0
    with rasterio.open(tmp_path / "o" / "masked.tif") as ds:
        classes = ds.read(1)
    assert (classes[:, :40] == 255).all() and (classes[:, 40:] != 255).all()


def test_s2hand_chip_bands_by_sentinel2_codes(rgb_run: Path, tmp_path: Path, capsys) -> None:
    """Issue 34 item 4: an S2Hand-layout chip (13 bands B1 .. B12 with B8A) is read with
    ``--bands`` naming all its bands by their Sentinel-2 codes; the model takes its own
    (BLUE, GREEN, RED = B2, B3, B4) by name, as from a file holding just those three."""
    from tests.realdata import S2HAND_CODES, s2hand_chip_from_landsat

    s2hand, three = s2hand_chip_from_landsat(LANDSAT, tmp_path / "chips")
    out = tmp_path / "o"
    assert predict("--model", str(rgb_run), str(s2hand), "--out", str(out / "unnamed")) == 1
    assert "13 unnamed bands" in capsys.readouterr().err
    assert not (out / "unnamed").exists()
    codes = ",".join(S2HAND_CODES)
    assert predict("--model", str(rgb_run), str(s2hand), "--out", str(out), "--bands", codes) == 0
    assert predict("--model", str(rgb_run), str(three), "--out", str(out / "rgb")) == 0
    with (
        rasterio.open(out / "Landsat_1_S2Hand.tif") as a,
        rasterio.open(out / "rgb" / "Landsat_1_rgb.tif") as b,
    ):
        assert np.array_equal(a.read(), b.read())
    # a wrong code names the codes that are accepted
    bad = codes.replace("B8A", "B8B")
    assert (
        predict("--model", str(rgb_run), str(s2hand), "--out", str(out / "x"), "--bands", bad) == 1
    )
    err = capsys.readouterr().err
    assert "Unknown band 'B8B' in --bands" in err and "NIR_NARROW (B8A)" in err


def test_band_aliases() -> None:
    from eofm.bands import check_band_names

    s2 = ["B01", "b2", "B03", "B4", "B05", "B6", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    from eofm.bands import SENTINEL2_L1C_BANDS

    assert check_band_names(s2, where="t") == list(SENTINEL2_L1C_BANDS)
    hls_l30 = ["L30.B02", "L30_B03", "L30.B04", "L30.B05", "L30.B06", "L30.B07"]
    assert check_band_names(hls_l30, where="t") == [
        "BLUE",
        "GREEN",
        "RED",
        "NIR_NARROW",
        "SWIR_1",
        "SWIR_2",
    ]
    assert check_band_names(["blue", "NIR narrow", "swir16", "swir22"], where="t") == [
        "BLUE",
        "NIR_NARROW",
        "SWIR_1",
        "SWIR_2",
    ]
    # a recipe's data.bands by code picks the S2Hand chips' bands by name
    from eofm.data.sen1floods11 import source_for_bands

    prithvi = ["B2", "B3", "B4", "B8A", "B11", "B12"]
    assert source_for_bands(prithvi) == ("S2Hand", [2, 3, 4, 9, 12, 13])
    with pytest.raises(EofmError, match="Duplicate"):
        check_band_names(["B8A", "NIR_NARROW"], where="t")


@pytest.mark.parametrize("name", ["parquet", "geoparquet"])
def test_vector_parquet_option_and_file_agree(name: str) -> None:
    """Issue 34 item 14: ``--vector parquet`` (or its alias ``geoparquet``) -> ``.parquet``."""
    from eofm.cli import _parser
    from eofm.predict.options import PredictOptions
    from eofm.predict.plan import plan_scene

    args = _parser().parse_args(
        ["predict", "--model", "m", "a.tif", "--out", "o", "--vector", name]
    )
    options = PredictOptions(vector=args.vector)
    options.validate()
    assert options.vector == "parquet"
    plan = plan_scene(
        Path("/nowhere/a.tif"),
        Path("/nowhere/out"),
        quicklook=False,
        vector="parquet",
        overwrite=False,
    )
    assert plan.vector == Path("/nowhere/out/a.parquet")

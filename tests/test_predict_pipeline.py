"""The parallel predict pipeline gives exactly what one serial pass over the tiles gives.

The reference below is the plain algorithm: every tile in scene order, its probabilities
times the blending window added into whole-scene float32 accumulators, divided by the
summed weights, argmax. The streaming engine (reading threads, model thread, blending
thread, column bands) must reproduce its pixels bit for bit, and its COG must be the file
GDAL's COG driver makes from the finished map.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.shutil import copy as raster_copy
from torch import nn

from eofm.models.trained import TrainedModel
from eofm.predict.engine import Predictor
from eofm.predict.grid import blend_weights, tile_starts
from eofm.predict.options import PredictOptions
from eofm.predict.scenes import SceneReader
from tests.realdata import SHARED
from tests.test_predict import LANDSAT, crop

NIGERIA = SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif"


class PixelModel(nn.Module):
    """Per-pixel logits (no GEMM, so a tile's output does not depend on its batch)."""

    def __init__(self, bands: int, classes: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.scale = nn.Parameter(torch.randn(classes, bands, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = (self.scale[None, :, :, None, None] * x[:, None]).sum(dim=2)
        return torch.tanh(mixed * 3.0) + torch.sin(x[:, :1] * 5.0)


def trained_for(bands: list[str], mean: list[float], std: list[float], classes: int = 3):
    names = [f"class_{i}" for i in range(classes)]
    model = PixelModel(len(bands), classes).eval()
    return TrainedModel(model, None, bands, mean, std, names, 16, "pixel", manifest={})


def serial_reference(trained, options: PredictOptions, path: Path) -> np.ndarray:
    """One pass, tile by tile in scene order, into whole-scene float32 accumulators."""
    with rasterio.open(path) as ds:
        height, width, count = ds.height, ds.width, ds.count
    tile, stride = options.tile, options.tile - options.overlap
    reader = SceneReader(path, list(range(1, count + 1)), trained.mean, trained.std, tile)
    predictor = Predictor(trained, PredictOptions(tile=tile, overlap=options.overlap))
    k = len(trained.class_names)
    acc = np.zeros((k, height, width), np.float32)
    wsum = np.zeros((height, width), np.float32)
    valid = np.zeros((height, width), bool)
    weights = blend_weights(tile)
    for r in tile_starts(height, tile, stride):
        for c in tile_starts(width, tile, stride):
            data, mask = reader.read(r, c)
            h, w = min(tile, height - r), min(tile, width - c)
            if mask.any():
                probs = predictor.stage.probabilities(data[None])[0] * weights
            else:
                probs = np.zeros((k, tile, tile), np.float32)
            acc[:, r : r + h, c : c + w] += probs[:, :h, :w]
            wsum[r : r + h, c : c + w] += weights[:h, :w]
            valid[r : r + h, c : c + w] |= mask[:h, :w]
    reader.close()
    probs = acc / np.maximum(wsum, 1e-12)
    if options.probabilities:
        return np.where(valid, probs, np.nan).astype(np.float32)
    return np.where(valid, probs.argmax(axis=0), 255)[None].astype(np.uint8)


CASES = [
    # (scene, tile, overlap, batch, column band, workers, probabilities)
    ("landsat", 64, 16, 5, 4096, 1, False),
    ("landsat", 64, 16, 3, 90, 3, False),  # several column bands, three reading threads
    ("landsat", 64, 48, 7, 4096, 2, False),  # stride below the overlap
    ("landsat", 64, 16, 4, 100, 2, True),
    ("nigeria", 96, 32, 6, 4096, 2, False),  # scattered NaN pixels
    ("small", 224, 32, 8, 4096, 1, True),  # smaller than one tile
]


@pytest.mark.parametrize(("scene", "tile", "overlap", "batch", "band", "workers", "probs"), CASES)
def test_parallel_pipeline_equals_serial_pass(
    tmp_path: Path, monkeypatch, scene, tile, overlap, batch, band, workers, probs
) -> None:
    monkeypatch.setattr("eofm.predict.grid.COLUMN_BAND", band)
    if scene == "nigeria":
        path, trained = NIGERIA, trained_for(["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    else:
        size = (300, 260) if scene == "landsat" else (100, 80)
        path = crop(LANDSAT, tmp_path / "scene.tif", 700, 900, *size)
        trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    options = PredictOptions(
        tile=tile,
        overlap=overlap,
        batch_size=batch,
        workers=workers,
        probabilities=probs,
        quicklook=False,
    )
    result = Predictor(trained, options).predict(path, tmp_path / "out")
    suffix = "_probabilities.tif" if probs else ".tif"  # probabilities sit beside the map
    (product,) = [p for p in result.outputs if p.name == path.stem + suffix]
    with rasterio.open(product) as ds:
        streamed = ds.read()
    expected = serial_reference(trained, options, path)
    assert streamed.dtype == expected.dtype and streamed.shape == expected.shape
    if probs:  # the weight sums are a row sum times a column sum: float rounding only
        assert np.array_equal(np.isnan(streamed), np.isnan(expected))
        np.testing.assert_allclose(streamed, expected, rtol=0, atol=1e-6)
    else:  # the one-pass accumulator's classes, but where two classes tie within rounding
        options.probabilities = True
        reference = np.sort(serial_reference(trained, options, path), axis=0)
        tied = np.nan_to_num(reference[-1] - reference[-2], nan=1.0) < 1e-6
        assert np.array_equal(streamed[0][~tied], expected[0][~tied])
        assert tied.mean() < 0.5  # PixelModel's tanh saturates: two classes may share a logit
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in result.outputs
    )


def test_class_map_cog_is_the_file_gdal_makes(tmp_path: Path, monkeypatch) -> None:
    """The COG equals GDAL's own from the finished class map (overviews by nearest)."""
    monkeypatch.setattr("eofm.predict.grid.COLUMN_BAND", 700)
    path = crop(LANDSAT, tmp_path / "scene.tif", 0, 0, 1100, 900)  # overviews 2x, 4x, 8x
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    options = PredictOptions(tile=128, overlap=16, batch_size=16, quicklook=False)
    cog = Predictor(trained, options).predict(path, tmp_path / "out").outputs[0]
    with rasterio.open(cog) as ds:
        assert ds.overviews(1) == [2, 4, 8]
        profile = ds.profile | {"compress": None, "driver": "GTiff"}
        classes = ds.read()
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", **profile) as out:
        out.write(classes)
    reference = tmp_path / "reference.tif"
    raster_copy(
        plain,
        reference,
        driver="COG",
        compress="DEFLATE",
        blocksize=256,
        overview_resampling="nearest",
    )
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (cog, reference)]
    assert digest[0] == digest[1]


def test_a_block_broken_mid_scene_fails_with_nothing_left(tmp_path: Path) -> None:
    """Blocks past the cut are unreadable: the stream stops there, naming the file, and
    neither the outputs nor their staging files remain."""
    from eofm.errors import EofmError

    whole = crop(LANDSAT, tmp_path / "whole.tif", 700, 900, 300, 260)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    options = PredictOptions(tile=64, overlap=16, batch_size=4, quicklook=False)
    out = tmp_path / "out"
    with pytest.raises(EofmError, match="broken.tif"):
        Predictor(trained, options).predict(broken, out)
    assert list(out.iterdir()) == []


def test_one_predictor_over_many_scenes_writes_each_as_a_fresh_one(tmp_path: Path) -> None:
    """One predictor over several scenes (reusing its strip buffers where the strips have
    the same shape, finishing each scene's COGs in the background while the next one
    streams) writes every output as a fresh predictor does; a scene that failed
    mid-stream leaves nothing behind and no stale rows to the next."""
    from eofm.errors import EofmError

    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    options = PredictOptions(tile=32, overlap=8, batch_size=4, quicklook=False, vector="geojson")
    scenes = [crop(LANDSAT, tmp_path / f"{y}.tif", 700, y, 90, 70) for y in (900, 400)]
    scenes.append(crop(LANDSAT, tmp_path / "narrow.tif", 700, 900, 50, 70))  # other strips
    whole = crop(LANDSAT, tmp_path / "whole.tif", 700, 600, 90, 400)  # strips of scene 1's shape
    broken = tmp_path / "broken.tif"
    broken.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])

    def read(path: Path) -> bytes:
        with rasterio.open(path) as ds:
            return ds.read().tobytes()

    expected = []
    for path in scenes:
        result = Predictor(trained, options).predict(path, tmp_path / "fresh")
        expected.append([read(result.outputs[0]), result.outputs[1].read_bytes()])
    kept = Predictor(trained, options)
    results = [kept.predict(p, tmp_path / "kept", background=True) for p in scenes]
    kept.wait()
    for result, want in zip(results, expected, strict=True):
        assert [read(result.outputs[0]), result.outputs[1].read_bytes()] == want
    with pytest.raises(EofmError, match="broken.tif"):
        kept.predict(broken, tmp_path / "broken-out", background=True)
    kept.wait()
    assert list((tmp_path / "broken-out").iterdir()) == []
    again = kept.predict(scenes[0], tmp_path / "again", background=True)
    kept.wait()
    assert read(again.outputs[0]) == expected[0][0]


def test_an_output_that_fails_in_the_background_is_named(tmp_path: Path, monkeypatch) -> None:
    """A COG step that fails on the background thread raises from ``wait`` (or from the
    next scene), naming the output's scene and folder, with no partial file left."""
    from eofm.errors import EofmError

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("eofm.predict.engine.write_cog", disk_full)
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    options = PredictOptions(tile=32, overlap=8, batch_size=4, quicklook=False)
    scene = crop(LANDSAT, tmp_path / "scene.tif", 700, 900, 90, 70)
    predictor = Predictor(trained, options)
    predictor.predict(scene, tmp_path / "out", background=True)
    with pytest.raises(EofmError, match=r"scene\.tif .*No space left on device"):
        predictor.wait()
    assert list((tmp_path / "out").iterdir()) == []
    # raised by the next scene, once streamed: its own partial files go too
    other = crop(LANDSAT, tmp_path / "other.tif", 700, 400, 90, 70)
    predictor.predict(scene, tmp_path / "out", background=True)
    with pytest.raises(EofmError, match=r"scene\.tif .*No space left on device"):
        predictor.predict(other, tmp_path / "out", background=True)
    assert list((tmp_path / "out").iterdir()) == []

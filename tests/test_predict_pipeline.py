"""The parallel predict pipeline gives exactly what one serial pass over the tiles gives.

The reference below is the plain algorithm: every tile in scene order, its probabilities
times the blending window added into whole-scene float32 accumulators, divided by the
summed weights, argmax. The streaming engine (reading threads, model thread, blending
thread, column bands, in-stream COG overviews) must reproduce its pixels bit for bit,
and its COG must be the file GDAL itself makes from the finished map.
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
from eofm.predict.cog_stream import StreamedCog
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
                probs = predictor._probabilities(data[None])[0] * weights
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
    with rasterio.open(result.outputs[0]) as ds:
        streamed = ds.read()
    expected = serial_reference(trained, options, path)
    assert streamed.dtype == expected.dtype and streamed.shape == expected.shape
    assert np.array_equal(streamed, expected, equal_nan=True)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [result.outputs[0].name]


@pytest.mark.parametrize("writer", ["streamed", "gdal_copy"])
def test_class_map_cog_is_the_file_gdal_makes(tmp_path: Path, monkeypatch, writer) -> None:
    """The COG equals GDAL's own from the finished class map, whether its tiles were
    compressed while it streamed (``cog_stream``) or, where that does not apply, the
    map and its in-stream overviews were staged and copied by GDAL."""
    monkeypatch.setattr("eofm.predict.grid.COLUMN_BAND", 700)
    laid_out = []
    if writer == "gdal_copy":
        monkeypatch.setattr("eofm.predict.engine.streamed_cog", lambda *args: None)
    else:
        finish = StreamedCog.finish
        monkeypatch.setattr(StreamedCog, "finish", lambda cog: laid_out.append(finish(cog)))
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
    assert len(laid_out) == (writer == "streamed")


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


def test_buffers_are_on_ordinary_pages_while_streaming(tmp_path: Path, monkeypatch) -> None:
    """numpy's transparent-huge-page request is off while the strip buffers are made (the
    first touch of a huge page can stall on a VM: ``eofm.predict.pages``) and is restored
    once the scene is written, and after a failure mid-stream."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray

    from eofm.predict.strips import StripPool

    seen: list[bool] = []
    take = StripPool.take

    def recording_take(self):
        seen.append(multiarray._get_madvise_hugepage())
        if fail:
            raise RuntimeError("strip buffer refused")
        return take(self)

    monkeypatch.setattr(StripPool, "take", recording_take)
    path = crop(LANDSAT, tmp_path / "scene.tif", 700, 900, 100, 80)
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    options = PredictOptions(tile=32, overlap=8, batch_size=4, quicklook=False)
    previous = multiarray._set_madvise_hugepage(True)
    try:
        fail = False
        Predictor(trained, options).predict(path, tmp_path / "out")
        assert seen and not any(seen)
        assert multiarray._get_madvise_hugepage() is True
        fail, seen[:] = True, []
        with pytest.raises(RuntimeError, match="strip buffer refused"):
            Predictor(trained, options).predict(path, tmp_path / "again")
        assert seen == [False]
        assert multiarray._get_madvise_hugepage() is True
    finally:
        multiarray._set_madvise_hugepage(previous)


def test_model_stage_reuses_its_output_buffers(tmp_path: Path, monkeypatch) -> None:
    """On the CPU the weighted probabilities of a batch are written into a few buffers
    that the blending thread gives back, not into a new array per batch; ensembles and
    test-time views, which average several outputs, still get their own arrays."""
    from eofm.predict.batch_buffers import BatchBuffers

    taken: list[int] = []
    take = BatchBuffers.take

    def recording_take(self):
        buffer = take(self)
        taken.append(buffer.data_ptr())
        return buffer

    monkeypatch.setattr(BatchBuffers, "take", recording_take)
    path = crop(LANDSAT, tmp_path / "scene.tif", 700, 900, 300, 260)
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    options = PredictOptions(tile=32, overlap=8, batch_size=4, quicklook=False)
    Predictor(trained, options).predict(path, tmp_path / "out")
    assert len(taken) > 30 and len(set(taken)) <= 8

    from eofm.predict.members import TileModel

    x = torch.randn(4, 3, 32, 32)
    out = torch.empty(4, 3, 32, 32)
    single = TileModel([trained])
    single.to(torch.device("cpu"))
    with torch.inference_mode():
        written = single(x, [], {}, out=out)
        assert written.data_ptr() == out.data_ptr()
        assert torch.equal(written, trained.model(x).softmax(dim=1))
        flipped = TileModel([trained], tta_flip=True)
        flipped.to(torch.device("cpu"))
        assert flipped(x, [], {}, out=out).data_ptr() != out.data_ptr()


def test_strip_buffers_are_kept_for_the_next_scene_of_the_same_size(
    tmp_path: Path, monkeypatch
) -> None:
    """One predictor over several scenes reads into the strip buffers it already made
    when the next scene's strips have their shape, with every output as a fresh predictor
    writes it (stale rows and columns never leak); a scene that failed mid-stream, whose
    buffers never came back, leaves a new pool to the next (no wait for them)."""
    from eofm.errors import EofmError
    from eofm.predict.strips import StripPool

    pools: list[StripPool] = []
    init = StripPool.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        pools.append(self)

    monkeypatch.setattr(StripPool, "__init__", recording_init)
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    options = PredictOptions(tile=32, overlap=8, batch_size=4, quicklook=False)
    scenes = [crop(LANDSAT, tmp_path / f"{y}.tif", 700, y, 90, 70) for y in (900, 400)]
    scenes.append(crop(LANDSAT, tmp_path / "narrow.tif", 700, 900, 50, 70))  # other strips
    whole = crop(LANDSAT, tmp_path / "whole.tif", 700, 600, 90, 400)  # strips of scene 1's shape
    broken = tmp_path / "broken.tif"
    broken.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])

    def classes(path: Path, predictor: Predictor | None = None) -> np.ndarray:
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        result = (predictor or Predictor(trained, options)).predict(path, out)
        with rasterio.open(result.outputs[0]) as ds:
            return ds.read()

    expected = [classes(path) for path in scenes]
    pools.clear()
    kept = Predictor(trained, options)
    for path, want in zip(scenes, expected, strict=True):
        assert np.array_equal(classes(path, kept), want)
    assert len(pools) == 2  # the second scene reused the first one's strips
    with pytest.raises(EofmError, match="broken.tif"):
        kept.predict(broken, tmp_path / "broken-out")
    pools.clear()
    assert np.array_equal(classes(scenes[0], kept), expected[0])
    assert len(pools) == 1 and kept._strips is pools[0] and kept._strips.idle

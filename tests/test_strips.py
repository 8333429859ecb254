"""Strips of tiles: tiles as views of one read, pooled buffers, rows shared between strips,
and models that read a strided view exactly as they read a copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from eofm.predict.grid import tile_starts
from eofm.predict.scenes import SceneReader
from eofm.predict.strips import StripBuffer, StripPool, TileBatch
from tests.test_predict import LANDSAT, crop
from tests.test_predict_pipeline import NIGERIA


def strip_of(data: np.ndarray, mask: np.ndarray | None = None) -> StripBuffer:
    mask = np.ones(data.shape[1:], bool) if mask is None else mask
    strip = StripBuffer(data, mask)
    strip.count_valid_columns()
    return strip


def test_evenly_spaced_tiles_are_views_and_the_edge_batch_a_copy() -> None:
    data = np.random.default_rng(0).normal(size=(2, 32, 150)).astype(np.float32)
    strip = strip_of(data)
    offsets = tile_starts(150, 32, 24)  # 0, 24, ..., 96, then 118 flush with the edge
    even, edge = TileBatch(strip, offsets[:4], 32), TileBatch(strip, offsets[3:], 32)
    for batch in (even, edge):
        tiles = batch.host()
        assert tiles.shape == (len(batch), 2, 32, 32)
        for tile, offset in zip(tiles, batch.offsets, strict=True):
            assert np.array_equal(tile, data[:, :, offset : offset + 32])
    assert np.shares_memory(even.host(), data)
    assert not np.shares_memory(edge.host(), data)
    assert np.shares_memory(TileBatch(strip, [118], 32).host(), data)  # one tile: a view


def test_tiles_without_a_valid_pixel_are_found_from_the_column_index() -> None:
    mask = np.zeros((16, 100), bool)
    mask[3, 39] = True  # only the tiles covering column 39
    mask[15, 99] = True  # and the last column
    strip = strip_of(np.zeros((1, 16, 100), np.float32), mask)
    offsets = [0, 12, 24, 36, 48, 60, 72, 84]
    expected = [i for i, o in enumerate(offsets) if mask[:, o : o + 16].any()]
    assert list(TileBatch(strip, offsets, 16).any_valid()) == expected == [2, 3, 7]
    assert list(TileBatch(strip, offsets, 16).subset(np.array([3, 7])).offsets) == [36, 84]


def test_pool_makes_at_most_its_capacity_and_reuses_released_buffers() -> None:
    pool = StripPool(2, 8, 20, capacity=2)
    first, second = pool.take(), pool.take()
    assert first.data.shape == (2, 8, 20) and first.mask.shape == (8, 20)
    first.release()
    assert pool.take() is first
    second.release()
    assert pool.take() is second


def read_all(
    reader: SceneReader, rows: list[int], width: int, *, carry: bool, buffers: int = 2
) -> list:
    """Every strip of the scene, read one after the other into ``buffers`` buffers in
    turn (one: the strip before is overwritten by the next), sharing rows with the strip
    before when ``carry``."""
    pool = [reader.strip_buffers(0, width) for _ in range(buffers)]
    strips, previous = [], None
    for i, row in enumerate(rows):
        data, mask = reader.read_strip(row, 0, width, out=pool[i % buffers], carry=previous)
        strips.append((data.copy(), mask.copy()))
        previous = (data, mask, row) if carry else None
    return strips


@pytest.mark.parametrize(
    ("scene", "tile", "stride"),
    [("nigeria", 96, 64), ("nigeria", 64, 20), ("landsat", 64, 48), ("landsat_nodata", 48, 40)],
)
def test_rows_shared_with_the_strip_before_equal_a_fresh_read(
    tmp_path: Path, scene: str, tile: int, stride: int
) -> None:
    """NaN pixels, stride below the overlap, integer data with a nodata value."""
    if scene == "nigeria":
        path, mean, std = NIGERIA, [-11.0, -18.0], [4.0, 5.0]
    else:
        extra = {"nodata": 0} if scene == "landsat_nodata" else {}
        path = crop(LANDSAT, tmp_path / "scene.tif", 700, 900, 130, 203, **extra)
        mean, std = [9000.0, 8500.0, 8000.0], [1500.0] * 3
    with rasterio.open(path) as ds:
        height, width, count = ds.height, ds.width, ds.count
    reader = SceneReader(path, list(range(1, count + 1)), mean, std, tile)
    rows = tile_starts(height, tile, stride)
    fresh = read_all(reader, rows, width, carry=False)
    for buffers in (1, 2):
        shared = read_all(reader, rows, width, carry=True, buffers=buffers)
        for (a, a_mask), (b, b_mask) in zip(fresh, shared, strict=True):
            assert np.array_equal(a, b) and np.array_equal(a_mask, b_mask)
    reader.close()


def tiny_models() -> list[tuple[str, torch.nn.Module, list[str]]]:
    from eofm.backbones.manifest import ViTConfig
    from eofm.backbones.scalemae import ScaleMAEEncoder
    from eofm.models.segmentation import build_segmentation_model
    from eofm.recipe import load_recipe

    def segmentation(backbone: str, decoder: str) -> torch.nn.Module:
        recipe = load_recipe(
            {
                "backbone": {"name": backbone, "pretrained": False},
                "decoder": {"name": decoder, "channels": 16},
                "adapter": {"mode": "full"},
            }
        )
        return build_segmentation_model(recipe, num_classes=3, data_bands=["VV", "VH"])

    config = ViTConfig(img_size=32, in_chans=2, embed_dim=32, depth=2, num_heads=2)
    return [
        ("prithvi tl + upernet", segmentation("prithvi_eo_v2_tiny_tl", "upernet"), ["VV", "VH"]),
        ("timm resnet18 + unet", segmentation("timm:resnet18", "unet"), ["VV", "VH"]),
        ("scale-mae encoder", ScaleMAEEncoder(config), ["VV", "VH"]),
    ]


def test_our_models_read_a_strided_view_exactly_as_a_copy() -> None:
    """What lets the CPU path hand tiles over as views of the strip, uncopied."""
    torch.manual_seed(0)
    data = torch.randn(2, 32, 32 * 5).numpy()
    batch = TileBatch(strip_of(data), [0, 24, 48, 72], 32)
    view = torch.from_numpy(batch.host())
    assert not view.is_contiguous()
    for name, model, _ in tiny_models():
        model.eval()
        with torch.inference_mode():
            strided, copied = model(view), model(view.contiguous())
        strided = strided if isinstance(strided, torch.Tensor) else strided[0][-1]
        copied = copied if isinstance(copied, torch.Tensor) else copied[0][-1]
        assert torch.equal(strided, copied), name
        assert np.array_equal(
            batch.host(), np.stack([data[:, :, o : o + 32] for o in batch.offsets])
        )


def test_wide_buffers_pad_rows_to_an_odd_number_of_cache_lines() -> None:
    from eofm.predict.row_stride import CACHE_LINE, padded_width, wide_empty, wide_zeros

    for width in (1, 15, 16, 17, 224, 8191, 8192, 8193):
        for dtype in (np.float32, np.uint8, bool):
            item = np.dtype(dtype).itemsize
            row = padded_width(width, item) * item
            assert row >= width * item and row % CACHE_LINE == 0
            assert (row // CACHE_LINE) % 2 == 1
    array = wide_empty((2, 3, 8192), np.float32)
    assert array.shape == (2, 3, 8192) and array.strides[-2] == 8208 * 4
    zeros = wide_zeros((4, 100), bool)
    assert zeros.shape == (4, 100) and not zeros.any()


@pytest.mark.parametrize(
    "layout",
    [
        {"tiled": True, "blockxsize": 32, "blockysize": 32, "interleave": "pixel"},
        {"tiled": True, "blockxsize": 32, "blockysize": 32, "interleave": "band"},
        {"tiled": False, "blockysize": 1},  # one row per strip
        {"tiled": False, "blockysize": 7},
        {"tiled": True, "blockxsize": 32, "blockysize": 32, "compress": "deflate"},
    ],
)
def test_strips_read_past_the_block_cache_equal_plain_reads(tmp_path: Path, layout: dict) -> None:
    """``open_for_strips`` (GDAL's direct I/O for uncompressed files) changes no value:
    strips at unaligned rows and columns, NaN pixels, both interleavings, strips and
    tiles, and a compressed file (read through the cache as before)."""
    from rasterio.windows import Window

    from eofm.predict.scenes import open_for_strips

    rng = np.random.default_rng(3)
    data = rng.normal(-12, 4, (2, 90, 77)).astype(np.float32)
    data[:, 10:14, 20:50] = np.nan
    path = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=77, height=90, count=2, dtype="float32", **layout)
    profile |= {"crs": "EPSG:32631", "transform": rasterio.transform.from_origin(5e5, 5e6, 10, 10)}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    reader = SceneReader(path, [1, 2], [-12.0, -18.0], [4.0, 5.0], 40)
    with open_for_strips(path) as direct, rasterio.open(path) as plain:
        for row, col, h, w in [(0, 0, 40, 77), (13, 5, 40, 61), (50, 21, 40, 56), (89, 70, 1, 7)]:
            window = Window(col, row, w, h)
            assert np.array_equal(
                direct.read(window=window), data[:, row : row + h, col : col + w], equal_nan=True
            )
            assert np.array_equal(
                direct.read(window=window), plain.read(window=window), equal_nan=True
            )
    for row in (0, 17, 50):
        strip, mask = reader.read_strip(row, 0, 77)
        h = min(40, 90 - row)
        expected = (data[:, row : row + h] - np.float32([-12, -18])[:, None, None]) / np.float32(
            [4, 5]
        )[:, None, None]
        assert np.array_equal(mask[:h], np.isfinite(data[:, row : row + h]).all(axis=0))
        assert np.array_equal(strip[:, :h][:, mask[:h]], expected[:, mask[:h]])
    reader.close()


def test_readers_taking_while_buffers_are_made_ahead_never_wait_for_good() -> None:
    """Several readers take and give back strip buffers while others are made ahead:
    nobody waits for a buffer that will not come, and no more than ``capacity`` exist."""
    import threading

    from eofm.predict.batch_buffers import BatchBuffers

    for attempt in range(20):
        pool = StripPool(1, 4, 8, capacity=3)
        outputs = BatchBuffers(2, 1, 4)
        done: list[int] = []

        def reader(pool: StripPool = pool, done: list[int] = done) -> None:
            for _ in range(50):
                buffer = pool.take()
                buffer.release()
            done.append(1)

        def model(outputs: BatchBuffers = outputs, done: list[int] = done) -> None:
            for _ in range(50):
                outputs.give_back(outputs.take())
            done.append(1)

        threads = [threading.Thread(target=reader, daemon=True) for _ in range(3)]
        threads += [threading.Thread(target=model, daemon=True)]
        threads += [
            threading.Thread(target=pool.make_ahead, args=(3,), daemon=True),
            threading.Thread(target=outputs.make_ahead, args=(3,), daemon=True),
        ]
        for thread in (threads[-2], threads[0], threads[-1], *threads[1:-2]):
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert len(done) == 4, f"attempt {attempt}: a thread waited for good"
        assert pool.made <= pool.capacity


def test_a_taker_waiting_for_a_buffer_made_ahead_makes_its_own_when_none_is_left() -> None:
    """Two takers hold what they take while one buffer is being made ahead: the first
    gets that one, the second (which waited for it too) makes its own once it is gone,
    instead of waiting for a buffer nobody will give back."""
    import threading
    import time

    from eofm.predict.buffer_pool import BufferPool

    started = threading.Event()

    def slowly_touched() -> object:
        started.set()
        time.sleep(0.3)  # both takers arrive while this one is on its way
        return object()

    pool: BufferPool[object] = BufferPool(object, slowly_touched, capacity=3)
    ahead = threading.Thread(target=pool.make_ahead, args=(1,), daemon=True)
    ahead.start()
    assert started.wait(5)
    held: list[object] = []
    takers = [threading.Thread(target=lambda: held.append(pool.take()), daemon=True)]
    takers.append(threading.Thread(target=lambda: held.append(pool.take()), daemon=True))
    for taker in takers:
        taker.start()
    for thread in (ahead, *takers):
        thread.join(timeout=5)
    assert len(held) == 2 and held[0] is not held[1]
    assert pool.made == 2 <= pool.capacity

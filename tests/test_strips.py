"""Strips of tiles: tiles as views of one read, reused buffers, rows shared between strips,
and models that read a strided view exactly as they read a copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from eofm.predict.grid import tile_starts
from eofm.predict.scenes import SceneReader
from eofm.predict.strips import StripBuffer, TileBatch, strip_pool


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


def test_pool_reuses_released_buffers_and_never_waits() -> None:
    pool = strip_pool((2, 8, 20))
    first, second = pool.take(), pool.take()
    assert first.data.shape == (2, 8, 20) and first.mask.shape == (8, 20)
    assert first is not second
    first.release()
    assert pool.take() is first
    assert pool.take() is not second  # held: a new one is made, never waited for


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
def test_strips_of_every_layout_are_the_normalised_values(tmp_path: Path, layout: dict) -> None:
    """Strips at unaligned rows, NaN pixels, both interleavings, strips and tiles, and a
    compressed file."""
    rng = np.random.default_rng(3)
    data = rng.normal(-12, 4, (2, 90, 77)).astype(np.float32)
    data[:, 10:14, 20:50] = np.nan
    path = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=77, height=90, count=2, dtype="float32", **layout)
    profile |= {"crs": "EPSG:32631", "transform": rasterio.transform.from_origin(5e5, 5e6, 10, 10)}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    reader = SceneReader(path, [1, 2], [-12.0, -18.0], [4.0, 5.0], 40)
    for row in (0, 17, 50):
        strip, mask = reader.read_strip(row, 0, 77)
        h = min(40, 90 - row)
        expected = (data[:, row : row + h] - np.float32([-12, -18])[:, None, None]) / np.float32(
            [4, 5]
        )[:, None, None]
        assert np.array_equal(mask[:h], np.isfinite(data[:, row : row + h]).all(axis=0))
        assert np.array_equal(strip[:, :h][:, mask[:h]], expected[:, mask[:h]])
    reader.close()

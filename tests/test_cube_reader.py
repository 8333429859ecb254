"""Block-wise datacube reads equal whole-cube reads, with a budget small enough that every
read is cut into many spatial tiles and blocks of days."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eofm.data.cube_reader import CubeReader
from eofm.data.firecube import draw_negatives
from eofm.data.firecube_config import MESOGEOS_DYNAMIC, MESOGEOS_STATIC
from tests.firecube import make_cube


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    import xarray as xr

    path = make_cube(tmp_path_factory.mktemp("cube") / "mesogeos_cube.zarr", size=20)
    return xr.open_zarr(path).load()  # in memory: the blocks are cut the same, read faster


def whole_windows(cube, rows: np.ndarray, lag: int, patch: int):
    """The reference: every layer in memory, windows by plain indexing."""
    dynamic = np.stack([cube[v].values for v in MESOGEOS_DYNAMIC], 1)  # (T, C, H, W)
    static = np.stack([cube[v].values for v in MESOGEOS_STATIC])
    r = patch // 2
    d = np.empty((len(rows), lag, len(MESOGEOS_DYNAMIC), patch, patch), np.float32)
    s = np.empty((len(rows), len(MESOGEOS_STATIC), patch, patch), np.float32)
    for i, (t, y, x) in enumerate(rows):
        d[i] = dynamic[t - lag : t, :, y - r : y + r + 1, x - r : x + r + 1]
        s[i] = static[:, y - r : y + r + 1, x - r : x + r + 1]
    return d, s


@pytest.mark.parametrize("patch", [1, 3])
def test_windows_equal_whole_cube_reads(cube, patch: int) -> None:
    rng = np.random.default_rng(0)
    lag, r = 4, patch // 2
    rows = np.stack(
        [
            rng.integers(lag, cube.sizes["time"], 300),
            rng.integers(r, 20 - r, 300),
            rng.integers(r, 20 - r, 300),
        ],
        axis=1,
    )
    bytes_per_day = len(MESOGEOS_DYNAMIC) * (6 + 2 * r) ** 2 * 4
    reader = CubeReader(
        cube, MESOGEOS_DYNAMIC, MESOGEOS_STATIC, budget_bytes=7 * bytes_per_day, tile=6
    )
    dynamic, static = reader.windows(rows, lag, patch)  # 3 days per block, 6 px tiles
    expected = whole_windows(cube, rows, lag, patch)
    assert np.array_equal(dynamic, expected[0]) and np.array_equal(static, expected[1])


def test_events_are_found_block_by_block(cube) -> None:
    reader = CubeReader(cube, MESOGEOS_DYNAMIC, MESOGEOS_STATIC, budget_bytes=20 * 20 * 4 * 7)
    found = reader.events("ignition_points", 30.0)
    expected = np.argwhere(np.nan_to_num(cube["ignition_points"].values) > 30.0)
    assert len(found) > 10 and np.array_equal(found, expected)


def test_negatives_are_distinct_and_outside_every_event_box() -> None:
    rng = np.random.default_rng(1)
    events = rng.integers([0, 0, 0], [60, 30, 30], size=(40, 3))
    negatives = draw_negatives(events, 500, low=(5, 1, 1), high=(60, 29, 29), box=(3, 2, 2), seed=0)
    assert len(negatives) == 500 and len(np.unique(negatives, axis=0)) == 500
    assert (negatives >= [5, 1, 1]).all() and (negatives < [60, 29, 29]).all()
    gap = np.abs(negatives[:, None, :] - events[None, :, :])  # (N, E, 3)
    inside_box = (gap <= [3, 2, 2]).all(axis=2)
    assert not inside_box.any()


def test_danger_map_is_the_same_read_in_small_blocks(cube, monkeypatch, tmp_path: Path) -> None:
    import torch

    from eofm.decoders.gru import TemporalGRU
    from eofm.forecasts.danger_map import danger_map

    torch.manual_seed(0)
    model = TemporalGRU(len(MESOGEOS_DYNAMIC), len(MESOGEOS_STATIC), 3, hidden=8)
    manifest = {
        "inputs": {
            "dynamic_vars": MESOGEOS_DYNAMIC,
            "static_vars": MESOGEOS_STATIC,
            "lag_days": 4,
            "patch": 3,
        },
        "mean": [0.0] * (len(MESOGEOS_DYNAMIC) + len(MESOGEOS_STATIC)),
        "std": [1.0] * (len(MESOGEOS_DYNAMIC) + len(MESOGEOS_STATIC)),
    }
    date = str(cube["time"].values[50])[:10]
    whole = danger_map(model, manifest, cube, date)
    monkeypatch.setattr("eofm.data.cube_reader.BUDGET_BYTES", 20_000)
    monkeypatch.setattr("eofm.data.cube_reader.TILE", 5)
    pieces = danger_map(model, manifest, cube, date, batch_size=40)  # 2 grid rows a block
    assert np.isfinite(whole[1:-1, 1:-1]).all() and np.isnan(whole[0]).all()
    assert np.allclose(whole, pieces, equal_nan=True, atol=1e-6)

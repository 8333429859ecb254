"""Danger maps on a cube with the release's chunking (one whole-grid chunk per day): each
day-chunk of the window is decoded once per map, and the map is the model's score of each
land pixel's training window, whatever the read budget cuts the grid into."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from eofm.data.mesogeos_config import TRACK_A_DYNAMIC, TRACK_A_STATIC
from eofm.data.mesogeos_cube import MesogeosCube, cube_day_of_fire
from eofm.decoders.lstm import MesogeosLSTM
from eofm.forecasts.mesogeos_danger import mesogeos_danger_map
from tests.firecube import make_mesogeos_cube

FIRE_DAY = "2020-07-30"  # the cube's last day is 2020-07-29
LAG = 30


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("window") / "mesogeos_cube.zarr"
    return make_mesogeos_cube(path, start="2020-06-20", days=40, size=16)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The per-pixel scoring below makes hundreds of tiny model calls: on one intra-op
    thread, as two threads stall on each other on a busy two-core host (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CountingStore(zarr.storage.WrapperStore):
    """Counts the reads of each key: a chunk is decoded once per read."""

    def __init__(self, store, reads: Counter) -> None:
        super().__init__(store)
        self.reads = reads

    def _with_store(self, store):
        return type(self)(store, self.reads)

    async def get(self, key, prototype, byte_range=None):
        self.reads[key] += 1
        return await super().get(key, prototype, byte_range)


def open_counted(root: Path) -> tuple[object, Counter]:
    import xarray as xr

    reads: Counter = Counter()
    store = CountingStore(zarr.storage.LocalStore(root, read_only=True), reads)
    ds = xr.open_zarr(store, chunks=None)
    ds.encoding["source"] = str(root)
    return ds, reads


def setup(budget_mb: int) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    model = MesogeosLSTM(len(TRACK_A_DYNAMIC), len(TRACK_A_STATIC), 1, hidden=8)
    rng = np.random.default_rng(1)
    channels = len(TRACK_A_DYNAMIC) + len(TRACK_A_STATIC)
    manifest = {
        "inputs": {
            "dynamic_vars": TRACK_A_DYNAMIC,
            "static_vars": TRACK_A_STATIC,
            "lag_days": LAG,
            "read_budget_mb": budget_mb,
        },
        "mean": rng.normal(size=channels).tolist(),
        "std": (rng.uniform(size=channels) + 0.5).tolist(),
    }
    return model, manifest


@pytest.mark.parametrize("budget_mb", [1, 64])
def test_each_day_chunk_is_decoded_once_per_map(
    cube: Path, budget_mb: int, tmp_path: Path, monkeypatch
) -> None:
    from eofm.data.mesogeos_window import band_rows

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model, manifest = setup(budget_mb)
    rows = band_rows(MesogeosCube(cube, budget_bytes=budget_mb << 20), LAG, len(TRACK_A_DYNAMIC))
    assert (rows < 16) == (budget_mb == 1)  # 1 MB: several bands, staged on disk
    ds, reads = open_counted(cube)
    reads.clear()
    mesogeos_danger_map(model, manifest, ds, FIRE_DAY)
    layers = {*TRACK_A_DYNAMIC, *TRACK_A_STATIC}
    chunks = {k: n for k, n in reads.items() if k.split("/")[0] in layers and "/." not in k}
    assert max(chunks.values()) == 1, {k: n for k, n in chunks.items() if n > 1}
    dynamic_days = Counter(k.split("/")[0] for k in chunks if k.split("/")[0] in TRACK_A_DYNAMIC)
    assert dynamic_days == dict.fromkeys(TRACK_A_DYNAMIC, LAG)  # the window, nothing more
    assert not list(tmp_path.iterdir())  # the staged window is gone


def test_the_map_scores_each_pixels_training_window(cube: Path) -> None:
    """The map equals the model's score of the samples ``MesogeosCube.gather`` builds for
    training (checked equal, before the window staging, to the band-wise reads it replaced),
    scored one pixel at a time so that batching cannot change the last bit."""
    from eofm.data.mesogeos_samples import standardise

    model, manifest = setup(64)
    model.eval()
    maps = {}
    for budget_mb in (1, 64):
        manifest["inputs"]["read_budget_mb"] = budget_mb
        ds, _ = open_counted(cube)
        maps[budget_mb] = mesogeos_danger_map(model, manifest, ds, FIRE_DAY, batch_size=1)
    reader = MesogeosCube(cube)
    t = reader.day_index(cube_day_of_fire(np.datetime64(FIRE_DAY)))
    land = np.isfinite(reader.days("t2m", t, t + 1)[0])
    ys, xs = np.nonzero(land)
    rows = np.stack([np.full(len(ys), t), ys, xs], 1)
    dynamic, static = reader.gather(rows, LAG, TRACK_A_DYNAMIC, TRACK_A_STATIC)
    d, s = standardise(dynamic, static, manifest["mean"], manifest["std"])
    doy = float(np.datetime64(FIRE_DAY).astype(object).timetuple().tm_yday)
    expected = np.full(land.shape, np.nan, np.float32)
    with torch.inference_mode():
        for i in range(len(rows)):
            logit = model(
                torch.from_numpy(d[i : i + 1, ..., None, None]),
                torch.from_numpy(s[i : i + 1, ..., None, None]),
                torch.full((1,), doy),
            )
            expected[ys[i], xs[i]] = logit.sigmoid().item()
    assert land.any() and not land.all()
    for budget_mb, probs in maps.items():
        assert np.array_equal(probs, expected, equal_nan=True), budget_mb


def test_a_firecube_layout_maps_through_data_variables(cube: Path, tmp_path: Path) -> None:
    """FireCube's names (Orion-AI-Lab/wildfire_forecasting) through ``data.variables``: the
    same map, the sea taken from the mapped ``t2m``."""
    import shutil

    from eofm.errors import EofmError

    names = {"t2m": "era5_max_t2m", "rh": "era5_min_rh", "population": "population_density"}
    renamed = tmp_path / "firecube.zarr"
    shutil.copytree(cube, renamed, copy_function=lambda s, d: Path(d).hardlink_to(s))
    (renamed / ".zmetadata").unlink()
    for ours, theirs in names.items():
        (renamed / ours).rename(renamed / theirs)
    model, manifest = setup(1)
    expected = mesogeos_danger_map(model, manifest, open_counted(cube)[0], FIRE_DAY)
    ds, _ = open_counted(renamed)
    with pytest.raises(EofmError, match="no variable '(t2m|rh)'"):
        mesogeos_danger_map(model, manifest, ds, FIRE_DAY)
    manifest["inputs"]["variables"] = names
    probs = mesogeos_danger_map(model, manifest, ds, FIRE_DAY)
    assert np.array_equal(probs, expected, equal_nan=True)

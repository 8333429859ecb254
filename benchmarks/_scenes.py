"""Benchmark inputs: real scenes tiled up to any size, and a small trained-format model."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LANDSAT = (
    ROOT.parent / "shared" / "data" / "landsat" / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
)
CACHE = Path("/tmp/eofm-bench")


def tiled_scene(size: int) -> Path:
    """A ``size`` x ``size`` GeoTIFF made by repeating the real Landsat 8 scene (B2, B3, B4).

    Written block by block, so building even a 10k x 10k scene stays small in memory.
    """
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"landsat_tiled_{size}.tif"
    if path.exists():
        return path
    with rasterio.open(LANDSAT) as src:
        scene = src.read()
        profile = src.profile | {
            "width": size,
            "height": size,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
        }
        descriptions = ("BLUE", "GREEN", "RED")
    _, h, w = scene.shape
    tmp = path.with_suffix(".partial")
    with rasterio.open(tmp, "w", **profile) as out:
        for i, name in enumerate(descriptions, start=1):
            out.set_band_description(i, name)
        for top in range(0, size, 512):
            for left in range(0, size, 512):
                bh, bw = min(512, size - top), min(512, size - left)
                rows = (np.arange(top, top + bh) % h)[:, None]
                cols = (np.arange(left, left + bw) % w)[None, :]
                out.write(scene[:, rows, cols], window=Window(left, top, bw, bh))
    tmp.rename(path)
    return path


def tiny_run(name: str, *, tap_layers: tuple[int, ...], seed: int = 0) -> Path:
    """A run dir (Prithvi-tiny cut to ``tap_layers`` + progressive decoder) for RGB input."""
    sys.path.insert(0, str(ROOT))
    from tests.runs import make_run_dir

    run = CACHE / name
    if not (run / "model.json").exists():
        make_run_dir(
            run,
            ["BLUE", "GREEN", "RED"],
            [9000.0, 8500.0, 8000.0],
            [1500.0] * 3,
            tap_layers=tap_layers,
            seed=seed,
        )
    return run

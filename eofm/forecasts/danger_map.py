"""Next-day danger maps from a datacube: one GeoTIFF of fire probability over the cube's grid.

For a fire day D (``--date``), every pixel whose window fits in the grid gets the
model's probability of a fire starting on D, from the ``lag_days`` cube days ending on
D-1 (the file's ``CUBE_DAY`` tag; ``FIRE_DAY`` is D) and the static layers, normalised
exactly as in training (``model.json``). Models trained on ``data.name: mesogeos`` are
mapped by :mod:`eofm.forecasts.mesogeos_danger`. The map is float32
with NaN where no prediction was made, written atomically, georeferenced from the cube's
``x``/``y`` coordinates (cell centres) and its ``crs`` attribute (default EPSG:4326).
The cube is read a block of grid rows at a time (:mod:`eofm.data.cube_reader`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from eofm.errors import EofmError

log = logging.getLogger(__name__)


def cube_transform(x: np.ndarray, y: np.ndarray) -> tuple[Any, bool]:
    """The affine transform of a grid of cell centres, and whether rows must be flipped
    (latitudes increasing) to write north-up."""
    from rasterio.transform import from_origin

    if len(x) < 2 or len(y) < 2:
        raise EofmError("The cube's grid needs at least 2 x 2 cells to be georeferenced.")
    dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
    flip = dy > 0
    top = float(y.max()) + abs(dy) / 2
    return from_origin(float(x[0]) - dx / 2, top, dx, abs(dy)), flip


def danger_map(
    model: Any,
    manifest: dict,
    cube: Any,
    date: str,
    batch_size: int = 4096,
    weather: Any = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """``(H, W)`` probabilities of a fire starting on ``date`` (NaN outside the windows);
    ``weather`` gives the extra dynamic inputs of a model trained with a weather run."""
    import torch

    from eofm.data.coords import parse_date

    inputs = manifest["inputs"]
    if inputs.get("dataset") == "mesogeos":
        from eofm.forecasts.mesogeos_danger import mesogeos_danger_map

        return mesogeos_danger_map(model, manifest, cube, date, batch_size, temperature)
    dynamic_vars, static_vars = inputs["dynamic_vars"], inputs["static_vars"]
    lag, patch = int(inputs["lag_days"]), int(inputs["patch"])
    times = cube["time"].values.astype("datetime64[D]")
    year, doy = parse_date(date)
    day = np.datetime64(f"{year}-01-01") + np.timedelta64(doy - 1, "D")
    matches = np.nonzero(times == day)[0]
    if not len(matches):
        raise EofmError(f"--date {date} is not in the cube (it covers {times[0]} .. {times[-1]}).")
    j = int(matches[0])
    if j < lag:
        raise EofmError(f"--date {date} leaves fewer than {lag} days of history in the cube.")
    for name in [*dynamic_vars, *static_vars]:
        if name not in cube:
            raise EofmError(f"The cube has no variable '{name}', which the model was trained on.")
    from eofm.data.cube_reader import CubeReader
    from eofm.data.firecube import standardise_windows, weather_windows

    reader = CubeReader(cube, dynamic_vars, static_vars)
    h, w = reader.height, reader.width
    r = patch // 2
    out = np.full((h, w), np.nan, np.float32)
    per_block = max(1, batch_size // max(1, w - 2 * r))  # grid rows predicted together
    model.eval()
    with torch.inference_mode():
        for top in range(r, h - r, per_block):
            ys, xs = np.mgrid[top : min(top + per_block, h - r), r : w - r]
            rows = np.stack([np.full(ys.size, j), ys.ravel(), xs.ravel()], axis=1)
            dynamic, static = reader.windows(rows, lag, patch)
            if weather is not None:
                coords = (cube["y"].values, cube["x"].values)
                extra = weather_windows(weather, rows, cube["time"].values, coords, lag, patch)
                dynamic = np.concatenate([dynamic, extra], axis=2)
            dynamic, static = standardise_windows(
                dynamic, static, manifest["mean"], manifest["std"]
            )
            logits = model(
                torch.from_numpy(dynamic),
                torch.from_numpy(static),
                torch.full((len(rows),), float(doy)),
            )
            out[rows[:, 1], rows[:, 2]] = (logits / temperature).sigmoid().numpy()
    return out


def window_end(date: str) -> str:
    """The cube day the inputs of a map of fires on ``date`` end on (ISO): the day before,
    for both datasets (Mesogeos records a fire igniting on t+1 at cube day t)."""
    from eofm.data.coords import parse_date

    year, doy = parse_date(date)
    day = np.datetime64(f"{year}-01-01") + np.timedelta64(doy - 2, "D")
    return str(day)


def write_danger_map(
    model: Any,
    manifest: dict,
    cube_path: Path,
    out_dir: Path,
    date: str,
    *,
    overwrite: bool,
    weather: Any = None,
    temperature: float = 1.0,
) -> Path:
    """``out_dir/danger_<date>.tif`` for the cube at ``cube_path``; refuses to overwrite."""
    import rasterio

    from eofm.atomic import atomic_output, check_output_dir
    from eofm.data.firecube import open_cube
    from eofm.publishing.provenance import output_attributes

    target = Path(out_dir) / f"danger_{date}.tif"
    if target.exists() and not overwrite:
        raise EofmError(f"{target} exists; use --overwrite to replace it.")
    mesogeos = manifest["inputs"].get("dataset") == "mesogeos"
    if mesogeos:
        from eofm.data.mesogeos_cube import open_mesogeos as open_cube  # no dask: whole chunks
    cube = open_cube(Path(cube_path))
    cube.encoding.setdefault("source", str(cube_path))
    probabilities = danger_map(
        model, manifest, cube, date, weather=weather, temperature=temperature
    )
    transform, flip = cube_transform(cube["x"].values, cube["y"].values)
    if flip:
        probabilities = probabilities[::-1]
    check_output_dir(target.parent)
    profile = {
        "driver": "GTiff",
        "width": probabilities.shape[1],
        "height": probabilities.shape[0],
        "count": 1,
        "dtype": "float32",
        "nodata": float("nan"),
        "crs": cube.attrs.get("crs", "EPSG:4326"),
        "transform": transform,
        "compress": "deflate",
    }
    with atomic_output(target) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(probabilities, 1)
            dst.set_band_description(1, f"probability of a fire starting on {date}")
            dst.update_tags(ACQUISITION_DATE=date, FIRE_DAY=date, CUBE_DAY=window_end(date))
            dst.update_tags(**output_attributes(manifest))  # the random-initialisation flag
    return target

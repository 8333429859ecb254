"""A next-day danger map from the Mesogeos cube for a model trained on Track A samples.

The fire day D maps from the window of cube days ``D-lag .. D-1``
(:func:`eofm.data.mesogeos_cube.cube_day_of_fire`), the annual layers at D-1's annual
value, normalised and NaN-filled as in training (:func:`eofm.data.mesogeos_samples.standardise`).
Cells whose ``t2m`` is NaN on D-1 (the sea: Track A keeps no sample there) stay NaN.

Each day-chunk of the window is decoded once and staged in bands of grid rows within the
run's ``data.read_budget_mb`` (:mod:`eofm.data.mesogeos_window`); the map is made band by band.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eofm.data.mesogeos_cube import MesogeosCube, cube_day_of_fire
from eofm.data.mesogeos_samples import standardise
from eofm.data.mesogeos_window import grid_window
from eofm.errors import EofmError


def mesogeos_danger_map(
    model: Any,
    manifest: dict,
    ds: Any,
    date: str,
    batch_size: int = 4096,
    temperature: float = 1.0,
) -> np.ndarray:
    """``(H, W)`` probabilities of a fire igniting on ``date`` (NaN where no prediction)."""
    import torch

    from eofm.data.coords import parse_date

    inputs = manifest["inputs"]
    dynamic, static = list(inputs["dynamic_vars"]), list(inputs["static_vars"])
    lag = int(inputs["lag_days"])
    root = Path(str(ds.encoding.get("source", "the datacube")))
    budget = int(inputs.get("read_budget_mb", 512)) << 20
    cube = MesogeosCube(root, inputs.get("variables") or {}, budget, ds=ds)
    cube.require([*dynamic, "t2m"], "dynamic input the model was trained on")
    cube.require(static, "static input the model was trained on")
    year, doy = parse_date(date)
    fire_day = np.datetime64(f"{year}-01-01") + np.timedelta64(doy - 1, "D")
    t = cube.day_index(cube_day_of_fire(fire_day))
    if t is None:
        raise EofmError(
            f"--date {date}: its fires are recorded on cube day {cube_day_of_fire(fire_day)}, "
            f"which the cube {root} ({cube.times[0]} .. {cube.times[-1]}) does not hold."
        )
    if t < lag - 1:
        raise EofmError(f"--date {date} leaves fewer than {lag} days of history in the cube.")
    out = np.full((cube.height, cube.width), np.nan, np.float32)
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode(), grid_window(cube, t, lag, dynamic, static) as window:
        for band in window.bands():
            land, windows, statics = window.band(band)
            probs = np.empty(len(windows), np.float32)
            for start in range(0, len(windows), batch_size):
                part = slice(start, start + batch_size)
                d, s = standardise(windows[part], statics[part], manifest["mean"], manifest["std"])
                logits = model(
                    torch.from_numpy(d[..., None, None]).to(device),
                    torch.from_numpy(s[..., None, None]).to(device),
                    torch.full((len(d),), float(doy), device=device),
                )
                probs[part] = (logits / temperature).sigmoid().float().cpu().numpy()
            flat = np.full(land.size, np.nan, np.float32)
            flat[land] = probs
            out[band] = flat.reshape(-1, cube.width)
            del windows, statics  # before the next band's are read
    return out

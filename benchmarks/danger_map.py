"""One Mesogeos danger map over the release's 1752 x 4714 grid: wall time and peak RSS.

A cube in the release's layout (zarr v2, one whole-grid chunk per day, float32, Blosc as
zarr's default; ``eofm/data/mesogeos_cube.py``) is generated with only what a map needs:
the 12 dynamic and 12 static Track A inputs over ``--days`` days (one 30-day window: the
map is of the fires of the day after the cube's last), the sea (the grid's southern ``--sea`` share) NaN. The map
runs in a fresh process (the Track A LSTM, random weights: the numbers are the
pipeline's, not a forecast; ``--hidden`` below the published 128 where the CPU is slow) and reports its wall and CPU time, its peak resident
memory and the bands the read budget cut the grid into (each day-chunk of the window is
decompressed once per map and staged in those bands, ``eofm/data/mesogeos_window.py``).

    python benchmarks/danger_map.py --out /tmp/meso_bench [--budget-mb 2048]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 1752, 4714


def generate(path: Path, days: int, height: int, width: int, sea: float) -> None:
    import dask.array as da
    import pandas as pd
    import xarray as xr
    import zarr

    from eofm.data.mesogeos_config import TRACK_A_DYNAMIC, TRACK_A_STATIC

    times = pd.date_range("2021-07-01", periods=days, freq="D")
    y = np.round(47.7 - np.arange(height) * 0.01, 4)
    x = np.round(-10.72 + np.arange(width) * 0.01, 4)
    static = ["dem", "roads_distance", "slope"]
    annual = [v for v in TRACK_A_STATIC if v not in static]
    lazy = {
        v: (
            ("time", "y", "x"),
            da.zeros((days, height, width), np.float32, chunks=(1, height, width)),
        )
        for v in [*TRACK_A_DYNAMIC, *annual]
    }
    lazy |= {
        v: (("y", "x"), da.zeros((height, width), np.float32, chunks=(height, width)))
        for v in static
    }
    ds = xr.Dataset(lazy, coords={"time": times, "y": y, "x": x})
    ds["spatial_ref"] = ((), np.int64(0))
    ds.to_zarr(path, mode="w", zarr_format=2, compute=False)  # unwritten chunks read as NaN
    rng = np.random.default_rng(0)
    land = int(height * (1 - sea))
    for name in [*TRACK_A_DYNAMIC, *annual, *static]:
        array = zarr.open_array(str(path / name), mode="r+")
        for day in range(days if name in TRACK_A_DYNAMIC else 1):
            field = np.full((height, width), np.nan, np.float32)
            noise = rng.standard_normal((land, width), dtype=np.float32)
            field[:land] = np.round(noise * 64) / 64  # 1/64 steps: compresses as real layers do
            if array.ndim == 3:
                array[day] = field
            else:
                array[:] = field
    zarr.consolidate_metadata(str(path))


MAP = """
import json, resource, sys, time
import numpy as np, torch
from eofm.data.mesogeos_config import TRACK_A_DYNAMIC, TRACK_A_STATIC
from eofm.data.mesogeos_cube import open_mesogeos
from eofm.decoders.lstm import MesogeosLSTM
from eofm.data.mesogeos_window import band_rows
from eofm.forecasts.mesogeos_danger import mesogeos_danger_map
from eofm.data.mesogeos_cube import MesogeosCube
root, date, budget, device, hidden = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
torch.manual_seed(0)
model = MesogeosLSTM(len(TRACK_A_DYNAMIC), len(TRACK_A_STATIC), 1, hidden=hidden).to(device)
n = len(TRACK_A_DYNAMIC) + len(TRACK_A_STATIC)
manifest = {"inputs": {"dynamic_vars": TRACK_A_DYNAMIC, "static_vars": TRACK_A_STATIC,
            "lag_days": 30, "read_budget_mb": budget}, "mean": [0.0] * n, "std": [1.0] * n}
start = time.perf_counter()
ds = open_mesogeos(root)
ds.encoding["source"] = root
probs = mesogeos_danger_map(model, manifest, ds, date, batch_size=8192)
wall = time.perf_counter() - start
cube = MesogeosCube(root, budget_bytes=budget << 20, ds=ds)
rows = band_rows(cube, 30, len(TRACK_A_DYNAMIC))
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                  "peak_rss_mb": usage.ru_maxrss // 1024,
                  "bands": -(-cube.height // rows), "mapped_pixels": int(np.isfinite(probs).sum())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the generated cube")
    parser.add_argument("--days", type=int, default=30, help="30: the window of the last day")
    parser.add_argument("--height", type=int, default=HEIGHT)
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--sea", type=float, default=0.5, help="share of the grid that is sea")
    parser.add_argument("--budget-mb", type=int, default=2048, help="data.read_budget_mb")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM width (Track A: 128)")
    parser.add_argument("--csv", type=Path, default=None, help="append the result to this CSV")
    args = parser.parse_args()
    cube = args.out / "mesogeos_cube.zarr"
    began = time.perf_counter()
    if not cube.exists():
        generate(cube, args.days, args.height, args.width, args.sea)
    generated = time.perf_counter() - began
    fire_day = str(np.datetime64("2021-07-01") + np.timedelta64(args.days, "D"))  # last day + 1
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", MAP, str(cube), fire_day, str(args.budget_mb), args.device, str(args.hidden)],
        capture_output=True, text=True, check=False, cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    row = {
        "date": datetime.date.today().isoformat(),
        "grid": f"{args.height}x{args.width}",
        "cube_days": args.days,
        "land_share": 1 - args.sea,
        "model": f"lstm {args.hidden}" + (" (Track A)" if args.hidden == 128 else ""),
        "device": args.device,
        "read_budget_mb": args.budget_mb,
        **result,
        "generation_s": round(generated, 1),
        "host": f"{platform.node()} {platform.processor() or platform.machine()}",
    }
    print(json.dumps(row))
    if args.csv:
        new = not args.csv.exists()
        with args.csv.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


if __name__ == "__main__":
    main()

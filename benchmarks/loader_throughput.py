"""Chips per second that the Sen1Floods11 training loader delivers, per worker count.

Sentinel-1 (VV, VH: the real chips of ../shared/data) and Sentinel-2 (6 of 13 bands,
BLUE..SWIR_2, from 512 x 512 S2Hand chips generated in the real format: int16, nodata 0,
the real labels' grids), random 224 px crops with flips, batch 8, through the same
datamodule ``eofm fit`` uses. Each measurement runs in its own process.

    python benchmarks/loader_throughput.py [--workers 0,1,2] [--repeats 3] [--baseline PATH]

``--baseline PATH`` times an older eofm checkout side by side (it read whole chips and
cropped in memory; this release reads only the crop window).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from _child import child_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sen1floods11"
CACHE = Path("/tmp/eofm-bench")
S2_BANDS = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]

CHILD = r"""
import json, sys, time, torch
from eofm.data.sen1floods11 import Sen1Floods11DataModule
root, bands, workers = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
dm = Sen1Floods11DataModule(root, bands, mean=[0.0] * len(bands), std=[1.0] * len(bands),
    split_fractions=(0.6, 0.2, 0.2), crop_size=224, batch_size=8, num_workers=workers,
    hflip=True, train_repeats=16)
loader = dm.train_dataloader()
for batch in loader:  # warm-up epoch: worker start-up and the page cache
    pass
started, chips = time.perf_counter(), 0
for batch in loader:
    chips += batch["image"].shape[0]
print(json.dumps({"chips_per_s": chips / (time.perf_counter() - started)}))
"""


def s2_root() -> Path:
    """S2Hand chips (13 bands, int16, nodata 0) on the real labels' grids, 512 x 512."""
    import numpy as np
    import rasterio

    root = CACHE / "s2hand"
    if (root / "S2Hand").is_dir():
        return root
    rng = np.random.default_rng(0)
    (root / "S2Hand").mkdir(parents=True)
    (root / "LabelHand").mkdir()
    for label in sorted((SHARED / "LabelHand").glob("*_LabelHand.tif")):
        chip = label.name.removesuffix("_LabelHand.tif")
        (root / "LabelHand" / label.name).write_bytes(label.read_bytes())
        with rasterio.open(label) as ds:
            profile = ds.profile | {"count": 13, "dtype": "int16", "nodata": 0}
            shape = (13, ds.height, ds.width)
        with rasterio.open(root / "S2Hand" / f"{chip}_S2Hand.tif", "w", **profile) as out:
            out.write(rng.integers(1, 4000, size=shape, dtype=np.int16))
    return root


def measure(pythonpath: Path, root: Path, bands: list[str], workers: int) -> float:
    args = [str(root), ",".join(bands), str(workers)]
    return child_json(CHILD, args, pythonpath, cwd=CACHE)["chips_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="an older eofm checkout to time side by side")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    datasets = [("S1 VV,VH", SHARED, ["VV", "VH"]), ("S2 6 of 13", s2_root(), S2_BANDS)]
    variants = [("eofm", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    print(
        f"random 224 px crops + flips, batch 8; median chips/s of {args.repeats} runs, interleaved"
    )
    print(f"{'data':<11} {'workers':>7}  " + "  ".join(f"{name:>9}" for name, _ in variants))
    for label, root, bands in datasets:
        for workers in (int(w) for w in args.workers.split(",")):
            runs: dict[str, list[float]] = {name: [] for name, _ in variants}
            for _ in range(args.repeats):
                for name, path in variants:
                    runs[name].append(measure(path, root, bands, workers))
            cells = "  ".join(f"{statistics.median(runs[name]):>9.0f}" for name, _ in variants)
            print(f"{label:<11} {workers:>7}  {cells}")


if __name__ == "__main__":
    main()

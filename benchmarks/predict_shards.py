"""Predict over 64 small scenes with 1 shard, and with 2 shards in parallel processes.

The case a Slurm job array or torchrun runs at scale (issue 38), on one machine: the
same scene folder predicted by one ``eofm predict --shard 0/1`` process, and by two
``eofm predict --shard i/2`` processes started together (each takes every other scene
and writes its own manifest). The cores are shared out: one process gets them all, two
get half each (``OMP_NUM_THREADS``), so the ratio is what splitting a node's cores between
processes buys or costs, including the second interpreter, torch import and model load.
Runs alternate between the two cases, so that the noise of a shared machine hits both.

    python benchmarks/predict_shards.py [--scenes 64] [--size 96] [--repeats 2] [--csv PATH]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from _scenes import CACHE, LANDSAT, ROOT, tiny_run

RATE = re.compile(r"eofm predict: ([\d.]+) MP in ([\d.]+) s")


def make_scenes(count: int, size: int) -> Path:
    """``count`` ``size`` x ``size`` crops of the real Landsat 8 scene, side by side."""
    import rasterio
    from rasterio.windows import Window

    folder = CACHE / f"shard_scenes_{count}x{size}"
    if folder.exists() and len(list(folder.glob("*.tif"))) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with rasterio.open(LANDSAT) as src:
        per_row = (src.width - 400) // size
        for i in range(count):
            window = Window(200 + (i % per_row) * size, 200 + (i // per_row) * size, size, size)
            profile = src.profile | {
                "width": size,
                "height": size,
                "transform": src.window_transform(window),
                "tiled": False,
            }
            profile.pop("blockxsize"), profile.pop("blockysize")
            with rasterio.open(folder / f"scene{i:03d}.tif", "w", **profile) as out:
                out.write(src.read(window=window))
                out.descriptions = ("BLUE", "GREEN", "RED")
    return folder


def run_shards(run: Path, scenes: Path, out: Path, shards: int, cores: int) -> dict:
    """Wall seconds of ``shards`` processes started together, and their own loop times."""
    shutil.rmtree(out, ignore_errors=True)
    threads = str(max(1, cores // shards))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=threads, HF_HUB_OFFLINE="1")
    for name in ("SLURM_ARRAY_TASK_ID", "RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(name, None)
    args = ["--tile", "64", "--overlap", "16", "--batch-size", "8", "--no-progress"]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "eofm", "predict", "--model", str(run), str(scenes)]
            + ["--out", str(out), "--shard", f"{i}/{shards}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(shards)
    ]
    outputs = [p.communicate() for p in procs]
    wall = time.perf_counter() - started
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode:
            raise SystemExit(err[-3000:])
    loops = [float(RATE.search(o).group(2)) for o, _ in outputs]
    return {"wall_s": wall, "loop_s": max(loops), "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--size", type=int, default=96, help="scene side in pixels")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--csv", type=Path, help="append the rows to this CSV")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    run = tiny_run("tiny_run_l2", tap_layers=(0, 1))
    scenes = make_scenes(args.scenes, args.size)
    results: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for shards in (1, 2):
            results[shards].append(
                run_shards(run, scenes, CACHE / f"shards{shards}", shards, cores)
            )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    date = datetime.now(timezone.utc).date().isoformat()
    rows = []
    median = {}
    for shards, runs in results.items():
        case = f"{args.scenes} scenes of {args.size}px, {shards} shard(s) x {runs[0]['threads']} thread(s)"
        for metric in ("wall_s", "loop_s"):
            values = [r[metric] for r in runs]
            median[shards, metric] = statistics.median(values)
            rows.append(
                {
                    "date": date,
                    "machine": "cpu2-xeon-kvm" if cores == 2 else f"cpu{cores}",
                    "code": f"eofm@{commit}",
                    "case": case,
                    "metric": metric,
                    "value": f"{median[shards, metric]:.2f}",
                    "range": f"{min(values):.2f}-{max(values):.2f}",
                    "repeats": len(values),
                    "run": 1,
                }
            )
    for row in rows:
        print(f"{row['case']:<50} {row['metric']:<7} {row['value']:>8} ({row['range']})")
    for metric in ("wall_s", "loop_s"):
        ratio = median[1, metric] / median[2, metric]
        print(f"speed-up of 2 shards over 1 ({metric}): {ratio:.2f}x")
        rows.append(
            rows[-1]
            | {
                "case": f"{args.scenes} scenes of {args.size}px, 1 shard / 2 shards",
                "metric": f"ratio_{metric}",
                "value": f"{ratio:.2f}",
                "range": "",
            }
        )
    if args.csv:
        new = not args.csv.exists()
        with args.csv.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()

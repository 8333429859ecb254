"""Throughput of the streaming predict pipeline itself, with a zero-cost model.

The model returns preallocated logits (zeros: one class everywhere; ``--varied``: fixed
blobs, a class map whose tiles differ), so what is timed is everything around it: reading
strips, normalising, cutting and batching tiles, softmax and blending weights, blending,
finishing classes, writing them (stage ``write``) and finishing the COGs (``cog``). On a
GPU the model is fast and this pipeline sets the speed (issue 10). The scene is a generated 2-band float32 GeoTIFF
(VV, VH; tiled 512 px, uncompressed) of ``--size`` pixels per side.

    python benchmarks/predict_pipeline.py [--size 8192] [--repeats 5] [--workers 1,2]
        [--baseline REV]    # also time an older eofm (a checkout, or a git revision) side by side
        [--scenes 8x4096]   # also time a run of 8 scenes of 4096 px in one process
        [--csv benchmarks/results/predict_pipeline-DATE.csv]  # every run's raw figures
        [--gpu-host]        # also time the host's share of a GPU run (row "GPU host")
        [--later]           # also time the scene again in each process (column "later")
        [--varied]          # a class map of varied tiles instead of one class everywhere

The ``GPU host`` row emulates what the host of a GPU run does: softmax and the blending
weights are computed on the device and land in pinned memory by DMA, so they cost the host
nothing, while the tiles are still stacked into a staging buffer for the upload. It has the
same outputs as the CPU path; no GPU is used.

Each measurement runs in its own process, pinned to 1, 2 or all cores, with one torch
thread (a GPU run needs none on the host), for each count of reading threads
(``--workers``; older checkouts have one). Printed: median MP/s, the median CPU seconds
of each stage's threads (the final COG step in wall seconds: laying out a class map's
COG, or GDAL's copy in older checkouts) and the peak RSS; then peak RSS against scene
size (it must stay flat). The slowest and fastest runs are printed beside the median: on
a shared machine they can differ by a third. The ``steal`` column is the median of the
seconds, during the timed scene, in which the hypervisor gave the pinned cores to
another guest (``/proc/stat``): where it is a good part of the scene's seconds, the
figures say more about the host than about eofm.

MP/s is the rate of the first 8k scene of a process, as in a one-scene run: each process
first predicts a small scene (``WARMUP_SIZE``), which imports rasterio and registers
GDAL's drivers, once per process whatever the number of scenes; that small scene's
seconds are printed as ``first``. With ``--later`` each process predicts the 8k scene a
second time, with its buffers made and touched, as the later scenes of a run over many:
the median rate of that second pass is printed as ``later``.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from _child import child_json

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path("/tmp/eofm-bench")
WARMUP_SIZE = 512  # each process predicts this scene first, untimed in the MP/s

CHILD = r"""
import itertools, json, os, resource, sys, time
from pathlib import Path
CPUS = set(range(int(sys.argv[3])))
os.sched_setaffinity(0, CPUS)

def stolen():
    # seconds in which the hypervisor ran another guest on our CPUs (steal, /proc/stat)
    try:
        with open("/proc/stat") as f:
            rows = [line.split() for line in f if line.startswith("cpu")]
    except OSError:
        return 0.0
    hz = os.sysconf("SC_CLK_TCK")
    return sum(int(r[8]) for r in rows if r[0][3:].isdigit() and int(r[0][3:]) in CPUS) / hz
import torch
torch.set_num_threads(1)
from torch import nn
try:  # this release
    from eofm.models.trained import TrainedModel
    from eofm.predict.engine import Predictor
    from eofm.predict.options import PredictOptions
    extra = {"manifest": {}}
except ImportError:  # releases before the package was laid out by concept
    from eofm.trained import TrainedModel
    from eofm.inference import Predictor, PredictOptions
    extra = {}

class ZeroCost(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = torch.zeros(64, 2, 224, 224)
        if sys.argv[8] == "varied":  # fixed logits with blobs: a class map of varied tiles
            yy, xx = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
            self.out[:, 1] = torch.sin(yy / 13.0) + torch.cos(xx / 29.0) - 0.3
    def forward(self, x):
        return self.out[: x.shape[0], :, : x.shape[-2], : x.shape[-1]]

trained = TrainedModel(ZeroCost(), None, ["VV", "VH"], [-12.0, -18.0], [4.0, 5.0],
                       ["not_water", "water"], 16, "zero-cost", **extra)
settings = dict(tile=224, overlap=32, batch_size=16, overwrite=True, quicklook=False)
try:
    options = PredictOptions(**settings, workers=int(sys.argv[4]))
except TypeError:  # releases without reading threads
    options = PredictOptions(**settings)
predictor = Predictor(trained, options)
if sys.argv[6] == "gpu-host":  # the host's share of a GPU run (this release only)
    # the GPU computes softmax and weights, and the result lands in pinned memory by DMA:
    # the same values as the CPU path, at no host cost
    probs = trained.model.out.softmax(dim=1)  # 0.5 exactly for the zeros of the uniform map
    landed = (probs * torch.from_numpy(predictor.weights)).numpy()
    predictor._weighted_probabilities = lambda batch, coords=None: (landed[: len(batch)], None)
    # what the host still does for an upload: stack the tiles into a staging buffer, one
    # of a few reused ones (as torch's cache of pinned blocks reuses them)
    staging = itertools.cycle([torch.empty(64, 2, 224, 224).numpy() for _ in range(3)])
    predictor._host_tiles = lambda tiles: tiles.stacked(out=next(staging)[: len(tiles)])
scenes, out, warmup = [Path(p) for p in sys.argv[1].split(",")], Path(sys.argv[2]), Path(sys.argv[5])
scene = scenes[0]
started = time.perf_counter()  # the first scene of a process also imports and registers GDAL
predictor.predict(warmup, out)
first = time.perf_counter() - started
stages = getattr(predictor, "timings", None)
if stages:
    stages.__init__()
steal, started = stolen(), time.perf_counter()
if len(scenes) == 1:
    predictor.predict(scene, out)
elif hasattr(predictor, "wait"):  # a scene's COG step overlaps the next scene's stream
    for each in scenes:
        predictor.predict(each, out, background=True)
    predictor.wait()
else:
    for each in scenes:
        predictor.predict(each, out)
seconds = time.perf_counter() - started
timed = dict(stages.seconds) if stages else {}  # the first 8k scene's
later = None
if sys.argv[7] == "later":  # the same scene again: buffers and GDAL's cache are warm
    started = time.perf_counter()
    predictor.predict(scene, out)
    later = time.perf_counter() - started
print(json.dumps({
    "seconds": seconds,
    "later_seconds": later,
    "steal_seconds": stolen() - steal,
    "first_seconds": first,
    "stages": timed,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def make_scene(size: int) -> Path:
    """A ``size`` x ``size`` 2-band float32 scene (dB-like values), written block by block."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"pipeline_{size}.tif"
    if path.exists():
        return path
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=2,
        dtype="float32",
        crs="EPSG:32631",
        transform=from_origin(500000, 5000000, 10, 10),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        nodata=float("nan"),
    )
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as ds:
        for row in range(0, size, 512):
            h = min(512, size - row)
            ds.write(
                rng.normal(-12, 4, (2, h, size)).astype("float32"), window=Window(0, row, size, h)
            )
        ds.descriptions = ("VV", "VH")
    tmp.rename(path)
    return path


def many_scenes(count: int, size: int) -> list[Path]:
    """``count`` scenes of ``size`` px under their own names (links to one file)."""
    scene = make_scene(size)
    links = []
    for i in range(count):
        link = CACHE / f"pipeline_{size}_scene{i}.tif"
        if not link.exists():
            link.symlink_to(scene.name)
        links.append(link)
    return links


def checkout(baseline: str) -> Path:
    """An older eofm: a folder, or a git revision of this repository (``git archive``)."""
    import subprocess

    if Path(baseline).is_dir():
        return Path(baseline).resolve()
    target = CACHE / f"checkout-{baseline}"
    if not (target / "eofm").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", baseline, "eofm"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def run(
    pythonpath: Path,
    scene: Path | list[Path],
    cores: int,
    workers: int = 1,
    mode: str = "cpu",
    later: bool = False,
    varied: bool = False,
) -> dict:
    """One measurement in a fresh process; ``mode`` ``gpu-host`` leaves out the host work
    that a GPU run does on the device (softmax and blending weights)."""
    out = CACHE / f"out-{os.getpid()}"
    warmup = make_scene(WARMUP_SIZE)
    scenes = scene if isinstance(scene, list) else [scene]
    args = [",".join(map(str, scenes)), str(out), str(cores), str(workers), str(warmup), mode]
    args.append("later" if later else "once")
    args.append("varied" if varied else "uniform")
    return child_json(CHILD, args, pythonpath, cwd=CACHE)


def summarise(results: list[dict], pixels: int) -> dict:
    """``mps``: (min, median, max) MP/s of the first 8k scene; ``later``: the median MP/s
    of the same scene predicted again in that process (None when not timed); then the
    medians of the first scene's seconds, of the seconds stolen by the hypervisor and of
    each stage's CPU seconds, and the peak RSS."""
    rates = [pixels / 1e6 / r["seconds"] for r in results]
    again = [pixels / 1e6 / r["later_seconds"] for r in results if r.get("later_seconds")]
    return {
        "mps": (min(rates), statistics.median(rates), max(rates)),
        "later": statistics.median(again) if again else None,
        "first": statistics.median(r["first_seconds"] for r in results),
        "steal": statistics.median(r.get("steal_seconds", 0.0) for r in results),
        "stages": {
            k: statistics.median(r["stages"].get(k, 0.0) for r in results)
            for k in results[0]["stages"]
        },
        "rss": max(r["rss_mb"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--baseline", help="an older eofm to time side by side: a checkout, or a git revision"
    )
    parser.add_argument("--workers", default="1,2", help="reading-thread counts to time")
    parser.add_argument("--cores", help="core counts to time (default: 1, 2 and all)")
    parser.add_argument(
        "--scenes",
        default="8x4096",
        help="the run of many scenes in one process, COUNTxSIZE (empty: not timed)",
    )
    parser.add_argument("--csv", type=Path, help="append every run's figures to this CSV")
    parser.add_argument(
        "--gpu-host",
        action="store_true",
        help="also time the host's share of a GPU run: softmax and weights cost it nothing",
    )
    parser.add_argument(
        "--rss-sizes", default="2048,4096,8192", help="scene sizes for the RSS check"
    )
    parser.add_argument(
        "--later",
        action="store_true",
        help="also time the scene a second time in each process (column 'later')",
    )
    parser.add_argument(
        "--varied",
        action="store_true",
        help="the zero-cost model returns fixed logits with blobs (a class map of varied "
        "tiles) instead of zeros (one class everywhere)",
    )
    args = parser.parse_args()
    cases = [(f"{args.size}px scene", [make_scene(args.size)], args.size**2)]
    if args.scenes:
        count, size = (int(v) for v in args.scenes.split("x"))
        cases.append((f"{count} scenes of {size}px", many_scenes(count, size), count * size**2))
    available = len(os.sched_getaffinity(0))
    kind = "varied class map" if args.varied else "one class everywhere"
    print(
        f"zero-cost model ({kind}), 2-band float32 scenes, tile 224, overlap 32, batch 16; "
        f"medians of {args.repeats} runs, interleaved"
    )
    counts = [int(w) for w in args.workers.split(",")]
    variants = [(f"eofm w{w}", ROOT, w, "cpu") for w in counts]
    if args.baseline:
        variants.append((f"{args.baseline}", checkout(args.baseline), 1, "cpu"))
    variants += [("GPU host", ROOT, 1, "gpu-host")] if args.gpu_host else []
    core_counts = (
        [int(c) for c in args.cores.split(",")]
        if args.cores
        else sorted({1, min(2, available), available})
    )
    rows, raw = [], []
    for cores in core_counts:
        runs: dict[tuple, list[dict]] = {}
        for repeat in range(args.repeats):  # interleaved, so noise hits every variant alike
            for case, scenes, pixels in cases:
                for name, path, workers, mode in variants:
                    result = run(path, scenes, cores, workers, mode, args.later, args.varied)
                    runs.setdefault((case, name), []).append(result)
                    mps = pixels / 1e6 / result["seconds"]
                    raw.append([name, case, cores, workers, repeat, result["seconds"], mps])
                    raw[-1] += [result["rss_mb"], result.get("steal_seconds", 0.0)]
        for case, _, pixels in cases:
            for name, *_ in variants:
                rows.append((case, name, cores, summarise(runs[(case, name)], pixels)))
    print(
        f"\n{'case':<20} {'pipeline':<9} {'cores':>5} {'MP/s':>7} {'min-max':>11} {'later':>6} "
        f"{'first':>6} {'steal':>6} {'peak RSS':>9}  CPU seconds per stage"
    )
    for case, name, cores, row in rows:
        split = ", ".join(f"{k} {v:.2f}" for k, v in row["stages"].items()) or "(not recorded)"
        low, mps, high = row["mps"]
        spread = f"{low:.1f}-{high:.1f}"
        later = f"{row['later']:.1f}" if row["later"] else "-"
        print(
            f"{case:<20} {name:<9} {cores:>5} {mps:>7.1f} {spread:>11} {later:>6} "
            f"{row['first']:>5.2f}s {row['steal']:>5.2f}s {row['rss']:>7.0f} MB  {split}"
        )
    if args.baseline:
        print(f"\nratio of MP/s (median) against {args.baseline}, side by side:")
        medians = {(c, n, k): r["mps"][1] for c, n, k, r in rows}
        for case, name, cores, row in rows:
            if name != args.baseline:
                ratio = row["mps"][1] / medians[(case, args.baseline, cores)]
                print(f"  {case:<20} {name:<9} {cores} cores: {ratio:.2f}x")
    print("\npeak RSS against scene size (eofm, all cores):")
    for size in (int(s) for s in args.rss_sizes.split(",") if s):
        result = run(ROOT, make_scene(size), available, varied=args.varied)
        rate = size * size / 1e6 / result["seconds"]
        print(f"  {size:>6} px: {result['rss_mb']:.0f} MB, {rate:.1f} MP/s")
        raw.append(["eofm w1", f"{size}px scene (RSS)", available, 1, 0, result["seconds"], rate])
        raw[-1] += [result["rss_mb"], result.get("steal_seconds", 0.0)]
    if args.csv:
        import csv

        args.csv.parent.mkdir(parents=True, exist_ok=True)
        new = not args.csv.exists()
        with open(args.csv, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(
                    ["pipeline", "case", "cores", "workers", "repeat", "seconds", "mp_per_s"]
                    + ["peak_rss_mb", "steal_seconds"]
                )
            writer.writerows(raw)


if __name__ == "__main__":
    main()

"""Megapixels per second of tiled inference over a real scene, eofm vs the peer.

eofm: ``Predictor`` streaming the scene (read, predict, blend, write a COG), tile 224,
overlap 32 (stride 192), batch 16. Peer: TerraTorch 1.2.11's ``tiled_inference`` (crop
224, stride 192, batch 16) on the scene loaded whole into memory, then a GeoTIFF write, as
its users run it. Both apply the same network (Prithvi-EO-2.0-tiny, 12 layers, with the
progressive decoder) to the real Landsat 8 scene of ../shared/data (2041 x 1860).

    python benchmarks/predict_throughput.py [--repeats 3] [--scene-size N] [--peer-python PATH]

``--scene-size N`` uses an N x N scene made by repeating the Landsat scene (users' scenes
start at 10k x 10k); peak RSS of each process is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _scenes import LANDSAT, ROOT, tiled_scene, tiny_run

OURS = """
import json, sys, time, torch
from pathlib import Path
torch.set_num_threads(int(sys.argv[4]))
from eofm.predict.engine import Predictor
from eofm.predict.options import PredictOptions
from eofm.families.restore import load_trained
predictor = Predictor(load_trained(sys.argv[1]), PredictOptions(tile=224, overlap=32, batch_size=16, overwrite=True, quicklook=False))
start = time.perf_counter()
predictor.predict(Path(sys.argv[2]), Path(sys.argv[3]))
import resource
print(json.dumps({"seconds": time.perf_counter() - start, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PEER = """
import json, sys, time, numpy as np, rasterio, torch
from pathlib import Path
torch.set_num_threads(int(sys.argv[4]))
from terratorch.tasks.tiled_inference import tiled_inference
from eofm.families.restore import load_trained
trained = load_trained(sys.argv[1])
model = trained.model
start = time.perf_counter()
with rasterio.open(sys.argv[2]) as ds:
    data, profile = ds.read().astype(np.float32), ds.profile
mean = np.asarray(trained.mean, np.float32)[:, None, None]
std = np.asarray(trained.std, np.float32)[:, None, None]
x = torch.from_numpy((data - mean) / std)[None]
with torch.inference_mode():
    logits = tiled_inference(model, x, out_channels=2, crop=224, stride=192, batch_size=16)
classes = logits.argmax(dim=1)[0].numpy().astype(np.uint8)
profile.update(count=1, dtype="uint8", nodata=255, compress="deflate")
Path(sys.argv[3]).mkdir(parents=True, exist_ok=True)
with rasterio.open(Path(sys.argv[3]) / "peer.tif", "w", **profile) as out:
    out.write(classes, 1)
import resource
print(json.dumps({"seconds": time.perf_counter() - start, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def timed(
    python: str, code: str, run: Path, scene: Path, args: argparse.Namespace, out: str
) -> dict:
    """Median seconds (and the peak RSS of those runs) of ``repeats`` fresh processes."""
    runs = []
    for _ in range(args.repeats):
        proc = subprocess.run(
            [python, "-c", code, str(run), str(scene), out, str(args.threads)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "rss_mb": max(r["rss_mb"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scene-size", type=int, help="N: an N x N scene tiled from Landsat")
    parser.add_argument("--peer-python", help="interpreter of a venv with terratorch 1.2.11")
    args = parser.parse_args()
    import rasterio

    run = tiny_run("tiny12", tap_layers=(2, 5, 8, 11))
    scene = tiled_scene(args.scene_size) if args.scene_size else LANDSAT
    with rasterio.open(scene) as ds:
        megapixels = ds.width * ds.height / 1e6
    rows = {
        "eofm predict (streaming)": timed(
            sys.executable, OURS, run, scene, args, "/tmp/eofm-bench/thr_ours"
        )
    }
    if args.peer_python:
        rows["TerraTorch tiled_inference"] = timed(
            args.peer_python, PEER, run, scene, args, "/tmp/eofm-bench/thr_peer"
        )
    print(
        f"{scene.name}: {megapixels:.2f} MP; Prithvi-EO-2.0-tiny + progressive decoder; tile 224, "
        f"stride 192, batch 16; {args.threads} threads; median of {args.repeats}"
    )
    print(f"{'method':<28} {'seconds':>8} {'MP/s':>7} {'peak RSS MB':>12}")
    for name, r in rows.items():
        print(
            f"{name:<28} {r['seconds']:>8.2f} {megapixels / r['seconds']:>7.3f} {r['rss_mb']:>12.0f}"
        )
    if len(rows) == 2:
        ours, peer = rows.values()
        print(f"eofm / peer throughput: {peer['seconds'] / ours['seconds']:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()

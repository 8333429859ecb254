"""Peak RSS of ``eofm predict`` on a 1k x 1k and a 10k x 10k scene (must differ by < 15%).

The scenes repeat the real Landsat 8 scene from ../shared/data; the model is
Prithvi-EO-2.0-tiny cut to 2 layers with the progressive decoder. Each run is a fresh
process that reports its own peak RSS.

    python benchmarks/predict_memory.py [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _scenes import tiled_scene, tiny_run

CHILD = """
import json, resource, sys, time
from pathlib import Path
from eofm.predict.options import PredictOptions
from eofm.commands.predict import run_predict
start = time.perf_counter()
run_predict(sys.argv[1], [sys.argv[2]], Path(sys.argv[3]), PredictOptions(batch_size=8, overwrite=True, quicklook=False), progress=False)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": time.perf_counter() - start}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    run = tiny_run("tiny2", tap_layers=(0, 1))
    rows = []
    for size in args.sizes:
        t = time.perf_counter()
        scene = tiled_scene(size)
        build = time.perf_counter() - t
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(run), str(scene), f"/tmp/eofm-bench/out_{size}"],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((size, result, build))
    print(f"{'scene':>12} {'MP':>7} {'peak RSS MB':>12} {'seconds':>8} {'MP/s':>6}")
    for size, r, _ in rows:
        mp = size * size / 1e6
        print(
            f"{size:>5}x{size:<6} {mp:>7.1f} {r['peak_rss_mb']:>12.0f} {r['seconds']:>8.1f} {mp / r['seconds']:>6.2f}"
        )
    if len(rows) >= 2:
        small, large = rows[0][1]["peak_rss_mb"], rows[-1][1]["peak_rss_mb"]
        print(f"peak RSS ratio largest/smallest: {large / small:.3f} (target < 1.15)")


if __name__ == "__main__":
    main()

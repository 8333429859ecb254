"""Peak RSS of ``eofm predict`` on a 1k x 1k and a 10k x 10k scene (must differ by < 15%).

The scenes repeat the real Landsat 8 scene from ../shared/data; the model is
Prithvi-EO-2.0-tiny cut to 2 layers with the progressive decoder. Each run is a fresh
process that reports its own peak RSS.

    python benchmarks/predict_memory.py [--sizes 1000 10000] [--members 1 3]

``--members N`` also times an ensemble of N such runs (``eofm ensemble``: mean
probabilities, class map and mutual information), whose memory must not grow with N.
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
runs = sys.argv[1].split(",")
run_predict(runs[0], [sys.argv[2]], Path(sys.argv[3]), PredictOptions(batch_size=8, overwrite=True, quicklook=False), progress=False, members=runs[1:])
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": time.perf_counter() - start}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--members", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    runs = [
        tiny_run("tiny2" if i == 0 else f"tiny2_{i}", tap_layers=(0, 1), seed=i)
        for i in range(max(args.members))
    ]
    rows = []
    for members in args.members:
        for size in args.sizes:
            t = time.perf_counter()
            scene = tiled_scene(size)
            build = time.perf_counter() - t
            spec = ",".join(str(r) for r in runs[:members])
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    spec,
                    str(scene),
                    f"/tmp/eofm-bench/out_{size}_{members}",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((members, size, result, build))
    print(f"{'members':>7} {'scene':>12} {'MP':>7} {'peak RSS MB':>12} {'seconds':>8} {'MP/s':>6}")
    for members, size, r, _ in rows:
        mp = size * size / 1e6
        print(
            f"{members:>7} {size:>5}x{size:<6} {mp:>7.1f} {r['peak_rss_mb']:>12.0f} {r['seconds']:>8.1f} {mp / r['seconds']:>6.2f}"
        )
    if len(rows) >= 2:
        small, large = rows[0][2]["peak_rss_mb"], max(r[2]["peak_rss_mb"] for r in rows)
        print(f"peak RSS ratio largest/smallest: {large / small:.3f} (target < 1.15)")


if __name__ == "__main__":
    main()

"""First touch of new numpy buffers, on transparent huge pages against ordinary pages.

Why ``eofm predict`` allocates without numpy's huge-page request (``eofm.predict.pages``):
each measurement makes ``--mb`` of strip-sized arrays in a fresh process and writes
them once, after ``--idle`` seconds in which the machine does nothing (so that memory
freed before is handed back, as between two user runs). Prints the median and range per
mode and the kernel's count of huge-page faults.

    python benchmarks/first_touch.py [--mb 280] [--repeats 3] [--idle 8]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import sys, time
import numpy as np
try:
    from numpy._core import multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray
multiarray._set_madvise_hugepage(sys.argv[1] == "huge")
count = max(1, int(sys.argv[2]) * 2**20 // (2 * 224 * 8192 * 4))
started = time.perf_counter()
buffers = [np.zeros((2, 224, 8192), np.float32) for _ in range(count)]
for buffer in buffers:
    buffer[...] = 1.0
print(time.perf_counter() - started)
"""


def huge_page_faults() -> int:
    """The kernel's count of transparent-huge-page faults (0 where it is not kept)."""
    for line in (
        Path("/proc/vmstat").read_text().splitlines() if Path("/proc/vmstat").exists() else []
    ):
        if line.startswith("thp_fault_alloc "):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=280)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", type=float, default=8.0)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {"huge": [], "ordinary": []}
    faults = dict.fromkeys(seconds, 0)
    for _ in range(args.repeats):
        for mode in seconds:  # interleaved, so the host's state hits both alike
            time.sleep(args.idle)
            before = huge_page_faults()
            out = subprocess.run(
                [sys.executable, "-c", CHILD, mode, str(args.mb)],
                capture_output=True,
                text=True,
                check=True,
            )
            faults[mode] += huge_page_faults() - before
            seconds[mode].append(float(out.stdout.strip()))
    print(f"first touch of {args.mb} MB of new arrays, after {args.idle:.0f} s idle:")
    for mode, values in seconds.items():
        print(
            f"  {mode:<9} pages: median {1e3 * statistics.median(values):7.0f} ms "
            f"({1e3 * min(values):.0f}-{1e3 * max(values):.0f}), "
            f"{faults[mode] / args.repeats:.0f} huge-page faults a run"
        )


if __name__ == "__main__":
    main()

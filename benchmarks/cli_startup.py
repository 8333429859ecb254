"""Wall time of the light ``eofm`` paths (median of N runs, fresh interpreter each).

Target (issue 2): ``eofm --help``, ``eofm recipes`` and a recipe typo answer in <= 0.5 s.
The peer's ``terratorch --help`` takes 23 s on this machine.

    python benchmarks/cli_startup.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

CASES = {
    "eofm --help": ["--help"],
    "eofm recipes": ["recipes"],
    "eofm backbones": ["backbones"],
    "eofm fit demo trainer.max_epohcs=1": ["fit", "demo", "trainer.max_epohcs=1"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    exe = shutil.which("eofm")
    base = [exe] if exe else [sys.executable, "-m", "eofm"]
    print(f"{'command':<38} {'median s':>9} {'max s':>7}")
    for name, argv in CASES.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([*base, *argv], capture_output=True, check=False)
            times.append(time.perf_counter() - start)
        print(f"{name:<38} {statistics.median(times):>9.3f} {max(times):>7.3f}")


if __name__ == "__main__":
    main()

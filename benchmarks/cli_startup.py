"""Wall time of the light ``eofm`` paths (median of N runs, fresh interpreter each).

Target (issues 2 and 37): ``eofm --help``, ``eofm recipes`` and a recipe typo answer in
< 0.1 s. The peer's ``terratorch --help`` takes 23 s on this machine. Writes
``results/cli_startup-<date>.csv``.

    python benchmarks/cli_startup.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date

from _results import write_results

CASES = {
    "eofm --help": ["--help"],
    "eofm recipes": ["recipes"],
    "eofm backbones": ["backbones"],
    "eofm fit demo trainer.max_epohcs=1": ["fit", "demo", "trainer.max_epohcs=1"],
    "eofm export --help": ["export", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    exe = shutil.which("eofm")
    base = [exe] if exe else [sys.executable, "-m", "eofm"]
    print(f"{'command':<38} {'median s':>9} {'max s':>7}")
    code = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    today, rows = date.today().isoformat(), []
    for name, argv in CASES.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([*base, *argv], capture_output=True, check=False)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"{name:<38} {median:>9.3f} {max(times):>7.3f}")
        rows.append([today, platform.machine(), f"eofm@{code}", name, "wall_s", f"{median:.3f}"])
        rows[-1] += [f"{min(times):.3f}-{max(times):.3f}", args.repeats, 1]
    out = write_results("cli_startup", rows)
    print(f"written to {out}")


if __name__ == "__main__":
    main()

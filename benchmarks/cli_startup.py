"""Wall time of the light ``eofm`` paths (median of N runs, fresh interpreter each).

Target (issues 2 and 37): ``eofm --help``, ``eofm recipes`` and a recipe typo answer in
< 0.1 s. The peer's ``terratorch --help`` takes 23 s on this machine. Writes
``results/cli_startup-<date>.csv``.

    python benchmarks/cli_startup.py [--repeats 9] [--baseline CHECKOUT]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from _results import write_results

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "eofm --help": ["--help"],
    "eofm recipes": ["recipes"],
    "eofm backbones": ["backbones"],
    "eofm fit demo trainer.max_epohcs=1": ["fit", "demo", "trainer.max_epohcs=1"],
    "eofm export --help": ["export", "--help"],
}


def _timed(checkout: Path, env: dict[str, str], argv: list[str]) -> float:
    """Seconds of ``python -m eofm ARGV`` importing eofm from ``checkout`` (``-m`` puts the
    working folder first on the path, so it runs there)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "eofm", *argv]
    subprocess.run(command, capture_output=True, env=env, cwd=checkout)
    return time.perf_counter() - start


def _code(checkout: Path) -> str:
    head = ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"]
    return subprocess.run(head, capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--baseline", type=Path, help="a checkout of an earlier commit, timed alternately"
    )
    args = parser.parse_args()
    checkouts = [ROOT] + ([args.baseline.resolve()] if args.baseline else [])
    envs = [os.environ | {"PYTHONPATH": str(c)} for c in checkouts]
    print(f"{'command':<38} {'code':<10} {'median s':>9} {'max s':>7}")
    today, rows = date.today().isoformat(), []
    for name, argv in CASES.items():
        times: list[list[float]] = [[] for _ in checkouts]
        for _ in range(args.repeats):  # alternating, so that both see the same host
            for each, checkout, env in zip(times, checkouts, envs, strict=True):
                each.append(_timed(checkout, env, argv))
        for checkout, each in zip(checkouts, times, strict=True):
            code, median = _code(checkout), statistics.median(each)
            print(f"{name:<38} {code:<10} {median:>9.3f} {max(each):>7.3f}")
            rows.append([today, platform.machine(), f"eofm@{code}", name, "wall_s"])
            rows[-1] += [f"{median:.3f}", f"{min(each):.3f}-{max(each):.3f}", args.repeats, 1]
    out = write_results("cli_startup", rows)
    print(f"written to {out}")


if __name__ == "__main__":
    main()

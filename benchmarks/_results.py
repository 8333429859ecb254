"""Where benchmarks put their raw figures: ``results/<name>-<date>.csv``, one row per
figure, in the columns every benchmark CSV shares."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COLUMNS = ["date", "machine", "code", "case", "metric", "value", "range", "repeats", "run"]


def write_results(name: str, rows: Sequence[Sequence[object]]) -> Path:
    """Write ``rows`` (in :data:`COLUMNS` order) to today's CSV of benchmark ``name``."""
    out = RESULTS / f"{name}-{date.today().isoformat()}.csv"
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return out

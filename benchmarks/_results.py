"""Where benchmarks put their raw figures: ``results/<name>-<date>.csv``, one row per
figure, in the columns every benchmark CSV shares."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
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


def append_results(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    """Append ``rows`` (mappings of column -> value) to ``path``, with a header row when
    the file is new: benchmarks that add each run's figures to one CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)

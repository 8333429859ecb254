"""Training logs that survive a resume.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts writing, so
resuming a run would lose the rows of every earlier session (and a resume that fails
would lose them with nothing in their place). :class:`ResumableCSVLogger` moves the
earlier rows aside while Lightning writes, then puts earlier and new rows back together,
whatever happened in between.
"""

from __future__ import annotations

import contextlib
import csv
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger

from eofm.atomic import atomic_path


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def merge_csv(first: Path, second: Path, target: Path) -> None:
    """Rows of ``first`` then ``second`` into ``target`` (atomically), under one header."""
    keys_a, rows_a = _read_rows(first)
    keys_b, rows_b = _read_rows(second)
    keys = sorted(set(keys_a) | set(keys_b))
    if not keys:
        return
    with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows_a + rows_b)


class ResumableCSVLogger(CSVLogger):
    """A ``CSVLogger`` whose ``metrics.csv`` keeps the rows of earlier sessions."""

    @contextlib.contextmanager
    def keeping_earlier_rows(self) -> Iterator[None]:
        current = Path(self.log_dir) / "metrics.csv"
        earlier = current.with_name(".metrics.csv.earlier")
        current.parent.mkdir(parents=True, exist_ok=True)
        if earlier.exists():  # an earlier session died while this was open: fold it in
            merge_csv(earlier, current, earlier)
        elif current.exists():
            os.replace(current, earlier)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists")
                yield
        finally:
            if earlier.exists():
                merge_csv(earlier, current, current)
                earlier.unlink()

"""Training logs that survive a resume.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts writing, so
resuming a run would lose the rows of every earlier session (and a resume that fails
would lose them with nothing in their place). :class:`ResumableCSVLogger` moves the
earlier rows aside while Lightning writes, then puts earlier and new rows back together,
whatever happened in between. Rows of an epoch that a killed session had started but not
checkpointed are dropped, since the resumed session logs that epoch again.
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


def _epoch(row: dict[str, str]) -> int | None:
    return int(float(row["epoch"])) if row.get("epoch") else None


def merge_csv(first: Path, second: Path, target: Path, *, epochs: int | None = None) -> None:
    """Rows of ``first`` then ``second`` into ``target`` (atomically), under one header.

    An epoch is logged by one session only: rows of ``first`` from the first epoch that
    ``second`` logs onwards, and from epoch ``epochs`` onwards when it is given, belong
    to an epoch that was cut short and logged again, and are dropped.
    """
    keys_a, rows_a = _read_rows(first)
    keys_b, rows_b = _read_rows(second)
    cutoffs = [e for e in (_epoch(row) for row in rows_b) if e is not None]
    cutoff = min([*cutoffs, *([epochs] if epochs is not None else [])], default=None)
    if cutoff is not None:
        rows_a = [row for row in rows_a if (_epoch(row) is None or _epoch(row) < cutoff)]
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
    def keeping_earlier_rows(self, epochs: int | None = None) -> Iterator[None]:
        """Keep the earlier sessions' rows of the first ``epochs`` epochs (the ones the
        checkpoint the run resumes from has finished), then this session's rows."""
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
                merge_csv(earlier, current, current, epochs=epochs)
                earlier.unlink()

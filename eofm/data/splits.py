"""Train/val/test splits: official split CSVs, or a deterministic split by event."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from eofm.errors import EofmError

SPLITS = ("train", "val", "test")


def chip_event(chip_id: str) -> str:
    """``Sri-Lanka_534068`` -> ``Sri-Lanka``: the event is the part before the last ``_``."""
    return chip_id.rsplit("_", 1)[0]


def split_by_event(
    chip_ids: Iterable[str], fractions: Sequence[float] = (0.6, 0.2, 0.2)
) -> dict[str, list[str]]:
    """Assign whole events to splits, deterministically (independent of input order).

    Events are ordered by the SHA-1 of their name; val and test take events until they
    reach their share of chips, train takes the rest. With three or more events every
    split gets at least one, so no event ever appears in two splits.
    """
    by_event: dict[str, list[str]] = {}
    for chip in sorted(set(chip_ids)):
        by_event.setdefault(chip_event(chip), []).append(chip)
    events = sorted(by_event, key=lambda e: hashlib.sha1(e.encode()).hexdigest())
    total = sum(len(v) for v in by_event.values())
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    queue = list(events)
    for split, fraction in (("test", fractions[2]), ("val", fractions[1])):
        target = fraction * total
        while fraction > 0 and len(queue) > 1 and len(out[split]) < target:
            out[split].extend(by_event[queue.pop(0)])
    for event in queue:
        out["train"].extend(by_event[event])
    return {s: sorted(v) for s, v in out.items()}


def read_split_csv(path: Path) -> list[str]:
    """Chip ids of an official Sen1Floods11 split CSV (``<chip>_S1Hand.tif,<chip>_LabelHand.tif``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EofmError(f"Cannot read split file {path}: {exc.strerror or exc}") from None
    chips = []
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        first = row[0].strip()
        for suffix in ("_S1Hand.tif", "_S2Hand.tif", "_LabelHand.tif"):
            if first.endswith(suffix):
                chips.append(first[: -len(suffix)])
                break
        else:
            raise EofmError(
                f"Split file {path}, line {lineno}: expected '<chip>_S1Hand.tif,<chip>_LabelHand.tif', got {','.join(row)!r}."
            )
    if not chips:
        raise EofmError(f"Split file {path} lists no chips.")
    return chips


class SplitLoaders:
    """``train/val/test_dataloader`` from one ``_loader(split)`` (Lightning's names).

    The default ``_loader`` serves a datamodule with ``dataset(split)``, ``collate``,
    ``batch_size``, ``num_workers`` and ``seed``: the training split shuffled by a seeded
    generator (and, with ``drop_last_train``, without a last short batch when there are
    others), pinned memory when ``pin_memory``.
    """

    pin_memory: bool = False
    drop_last_train: bool = False

    def _loader(self, split: str) -> Any:
        from torch.utils.data import DataLoader

        from eofm.data.loading import loader_options
        from eofm.data.sampling import order_options

        dataset = self.dataset(split)  # type: ignore[attr-defined]
        train = split == "train"
        return DataLoader(
            dataset,
            batch_size=self.batch_size,  # type: ignore[attr-defined]
            drop_last=train and self.drop_last_train and len(dataset) > self.batch_size,  # type: ignore[attr-defined]
            **order_options(len(dataset), self.seed, shuffle=train),  # type: ignore[attr-defined]
            collate_fn=self.collate,  # type: ignore[attr-defined]
            **loader_options(self.num_workers, pin_memory=self.pin_memory),  # type: ignore[attr-defined]
        )

    def train_dataloader(self) -> Any:
        return self._loader("train")

    def val_dataloader(self) -> Any:
        return self._loader("val")

    def test_dataloader(self) -> Any:
        return self._loader("test")

"""Train/val/test loaders; the Sen1Floods11 split rules (official split CSVs, or a
deterministic split by event) live in the light :mod:`eofm.data.sen1floods11_layout`
and are re-exported here."""

from __future__ import annotations

from typing import Any

from eofm.data.sen1floods11_layout import (  # noqa: F401 - re-exported
    SPLITS,
    chip_event,
    read_split_csv,
    split_by_event,
)


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
            **order_options(len(dataset), self.seed, shuffle=train, batch_size=self.batch_size),  # type: ignore[attr-defined]
            collate_fn=self.collate,  # type: ignore[attr-defined]
            **loader_options(self.num_workers, pin_memory=self.pin_memory),  # type: ignore[attr-defined]
        )

    def train_dataloader(self) -> Any:
        return self._loader("train")

    def val_dataloader(self) -> Any:
        return self._loader("val")

    def test_dataloader(self) -> Any:
        return self._loader("test")

"""Multi-temporal crop classification: 3 HLS dates x 6 bands per chip, CDL crop classes.

The layout, band order and label values are those of the release
(:mod:`eofm.data.multi_temporal_crop_layout`, which cites the dataset card and the
Prithvi configs). Samples hold the frames stacked frame-major, ``image (T*C, H, W)``,
normalised band by band (a band has one mean and std whatever its date); the model
takes the stack apart into frames (:mod:`eofm.models.temporal`). ``mask`` is the class
index (file value - 1), with ``IGNORE`` where the mask says "No Data" (0) or a frame
is invalid. TL backbones get ``temporal_coords (T, 2)``: each chip's dates from the
release's metadata table where present, else ``data.frames``' dates.

``training_data.txt`` chips train; ``validation_data.txt`` chips are divided into val
and test (in the ratio of ``data.split_fractions``' last two numbers, by the hash of
the chip id), since the release has no test split.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eofm.bands import HLS_PRITHVI_BANDS, band_indices, check_band_names, stack_band_names
from eofm.data.chips import IGNORE, ChipDataModule, LabelledChips, band_statistics
from eofm.data.geotiff import read_label
from eofm.data.multi_temporal_crop_layout import (
    BANDS_PER_FRAME,
    CLASS_NAMES,
    check_band_count,
    chip_dates,
    release_pairs,
)
from eofm.errors import EofmError

log = logging.getLogger(__name__)


def split_held_out(chips: Sequence[str], val_share: float) -> tuple[list[str], list[str]]:
    """Held-out chips to val, then test, in the order of their id's hash (deterministic);
    with two chips or more, each split keeps at least one."""
    order = sorted(chips, key=lambda c: hashlib.sha1(c.encode()).hexdigest())
    n_val = round(val_share * len(order))
    if len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    return sorted(order[:n_val]), sorted(order[n_val:])


def stack_indexes(bands: Sequence[str], frames: int) -> list[int]:
    """1-based band numbers of ``bands`` in every frame of a frame-major stack."""
    per_frame = band_indices(bands, HLS_PRITHVI_BANDS, where="the crop chips")
    return [t * BANDS_PER_FRAME + i + 1 for t in range(frames) for i in per_frame]


def check_labels(pairs: Mapping[str, tuple[Path, Path]], num_classes: int) -> None:
    """Every mask holds 0 (no data) or a class value 1..``num_classes``."""
    for chip, (_, mask) in pairs.items():
        label = read_label(mask)
        bad = np.unique(label[(label < 0) | (label > num_classes)])
        if bad.size:
            raise EofmError(
                f"Mask {mask} of chip {chip} holds value(s) {bad.tolist()[:5]} outside the "
                f"release's classes (0 no data, 1..{num_classes}: {', '.join(CLASS_NAMES)})."
            )


class FrameChips(LabelledChips):
    """Crop chips: class index = mask value - 1, "No Data" (0) ignored; ``temporal_coords``
    one row per frame."""

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        mask = sample["mask"]
        sample["mask"] = torch.where(mask <= 0, torch.full_like(mask, IGNORE), mask - 1)
        if "temporal_coords" in sample:  # (1, T, 2) as the base class wraps it -> (T, 2)
            sample["temporal_coords"] = sample["temporal_coords"].reshape(-1, 2)
        return sample


class MultiTemporalCropDataModule(ChipDataModule):
    """Splits, normalisation and loaders of the multi-temporal crop chips."""

    chips_class = FrameChips

    name = "multi_temporal_crop"
    num_classes = len(CLASS_NAMES)

    def __init__(
        self,
        root: str | Path,
        bands: Sequence[str] = HLS_PRITHVI_BANDS,
        *,
        frames: Sequence[Mapping[str, str]] = (),
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
        crop_size: int | None = 224,
        eval_crop_size: int | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        hflip: bool = True,
        seed: int = 0,
        pad_multiple: int = 16,
        train_repeats: int = 1,
        pin_memory: bool = False,
        temporal_coords: bool = False,
        location_coords: bool = False,
        gsd_from_data: bool = False,
        split: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        from eofm.data.multi_temporal_crop_config import MultiTemporalCropConfig

        root = Path(root)
        config = MultiTemporalCropConfig(
            frames=[dict(f) for f in frames] or MultiTemporalCropConfig().frames
        )
        self.frames = config.frames
        count = len(self.frames)
        names = check_band_names(bands, where="data.bands")
        self.frame_bands = names
        indexes = stack_indexes(names, count)
        splits = release_pairs(root)
        train, held_out = splits["training_chips"], splits["validation_chips"]
        everything = {**train, **held_out}
        for image, _ in everything.values():
            check_band_count(image, count)
        check_labels(everything, self.num_classes)
        f_val, f_test = split_fractions[1], split_fractions[2]
        val, test = split_held_out(list(held_out), f_val / max(f_val + f_test, 1e-12))
        mean, std = self._stack_statistics(mean, std, names, count, [p[0] for p in train.values()])
        dates = config.frame_dates()
        per_chip = chip_dates(root)  # the release's own dates, where it has them
        if temporal_coords and not all(dates) and not per_chip:
            log.warning(
                "multi_temporal_crop: data.frames gives no date for %s; the TL model trains "
                "without temporal coordinates.",
                [f["name"] for f, d in zip(self.frames, dates, strict=True) if not d],
            )
        dated = list(dates) if all(dates) else None
        chip_frames = {chip: per_chip.get(chip, dated) for chip in everything}
        self.prepare(
            root=root,
            bands=stack_band_names(names, [f["name"] for f in self.frames]),
            indexes=indexes,
            pairs=everything,
            splits={"train": list(train), "val": val, "test": test},
            mean=mean,
            std=std,
            crop_size=crop_size,
            eval_crop_size=eval_crop_size,
            batch_size=batch_size,
            num_workers=num_workers,
            hflip=hflip,
            seed=seed,
            pad_multiple=pad_multiple,
            train_repeats=train_repeats,
            pin_memory=pin_memory,
            dates=chip_frames,
            temporal_coords=temporal_coords and any(chip_frames.values()),
            location_coords=location_coords,
            gsd_from_data=gsd_from_data,
            region_split=split,
        )
        log.info(
            "Multi-temporal crops: %s",
            ", ".join(f"{s} {len(c)} chips" for s, c in self.splits.items()),
        )

    @staticmethod
    def _stack_statistics(
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        bands: Sequence[str],
        frames: int,
        train_images: Sequence[Path],
    ) -> tuple[list[float], list[float]]:
        """Per-band statistics repeated for every frame: given per band (the recipe's, the
        backbone's) or for the whole stack (a trained run's), else pooled over the frames of
        the training chips."""
        if mean is not None and std is not None:
            if len(mean) == len(bands) * frames:
                return list(mean), list(std)
            return list(mean) * frames, list(std) * frames
        m, s = band_statistics(train_images, stack_indexes(bands, frames), where=train_images[0])
        m2, s2 = np.reshape(m, (frames, -1)), np.reshape(s, (frames, -1))
        pooled = m2.mean(axis=0)  # frames of equal pixel counts: the mean of the means
        spread = np.sqrt(np.maximum((s2**2 + m2**2).mean(axis=0) - pooled**2, 1e-12))
        return pooled.tolist() * frames, spread.tolist() * frames

"""Labelled GeoTIFF chips: the dataset and datamodule that every chip layout shares.

A layout (Sen1Floods11, HLS Burn Scars, ...) only says where a chip's image and label
are, which bands of the image to read, and how chips split into train/val/test. Reading
(crop windows, validity, normalisation, flips), the checks run up front, statistics, the
loaders and what the latent cache and ``eofm predict`` need live here once.

Samples are ``{"image", "mask", "chip"}``: ``image`` normalised float32 ``(C, H, W)``
with invalid pixels set to 0; ``mask`` int64 ``(H, W)`` with ``IGNORE`` wherever the
label is no-data or any input band is invalid.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import NonGeoDataset

from eofm.data.geotiff import read_label, read_raster
from eofm.data.loading import loader_options
from eofm.data.sampling import order_options
from eofm.data.splits import SplitLoaders
from eofm.errors import EofmError

log = logging.getLogger(__name__)

IGNORE = -1
#: chip id -> (image path, label path)
Pairs = Mapping[str, tuple[Path, Path]]


def chip_status(
    image_path: Path, label_path: Path, indexes: Sequence[int], chip: str
) -> str | None:
    """Read a chip fully (so damaged files fail now); say why it carries no supervision."""
    if not label_path.is_file():
        raise EofmError(f"Label file {label_path} for chip {chip} does not exist.")
    image = read_raster(image_path, bands=indexes)
    label = read_label(label_path)
    if label.shape != image.valid.shape:
        raise EofmError(
            f"Label {label_path} is {label.shape[1]}x{label.shape[0]} px but image "
            f"{image_path} is {image.valid.shape[1]}x{image.valid.shape[0]} px."
        )
    if not image.valid.any():
        return "image entirely no data"
    if not (label != IGNORE).any():
        return "label entirely no data (-1)"
    if not ((label != IGNORE) & image.valid).any():
        return "no pixel with both a label and valid input"
    return None


def band_statistics(
    images: Sequence[Path], indexes: Sequence[int], *, where: Path
) -> tuple[list[float], list[float]]:
    """Per-band mean and std over the valid pixels of ``images`` (float64 running sums)."""
    total = np.zeros(len(indexes))
    squares = np.zeros(len(indexes))
    count = 0
    for path in images:
        image = read_raster(path, bands=indexes)
        pixels = image.data[:, image.valid].astype(np.float64)
        total += pixels.sum(axis=1)
        squares += (pixels**2).sum(axis=1)
        count += pixels.shape[1]
    if count == 0:
        raise EofmError(
            f"No valid pixel in the training chips under {where} to compute statistics."
        )
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


class LabelledChips(NonGeoDataset):
    """The chips ``pairs`` of one split, read band ``indexes`` (1-based) by crop window."""

    def __init__(
        self,
        pairs: Pairs,
        indexes: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        crop_size: int | None = None,
        random_crop: bool = False,
        hflip: bool = False,
        pad_multiple: int = 1,
        repeats: int = 1,
        coords: Mapping[str, dict] | None = None,
    ) -> None:
        self.coords = dict(coords or {})
        self.pairs = dict(pairs)
        self.chips = list(self.pairs)
        self.indexes = list(indexes)
        self.repeats = max(1, repeats)
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]
        self.crop_size = crop_size
        self.random_crop = random_crop
        self.hflip = hflip
        self.pad_multiple = max(1, pad_multiple)
        self._sizes: dict[Path, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.chips) * self.repeats

    def __getitem__(self, index: int) -> dict:
        chip = self.chips[index % len(self.chips)]
        image_path, label_path = self.pairs[chip]
        window = self._crop_window(image_path)
        image = read_raster(image_path, bands=self.indexes, window=window)
        label = read_label(label_path, window=window)
        mask = np.where(image.valid, label, IGNORE)
        data = np.where(image.valid, (image.data - self.mean) / self.std, 0.0).astype(np.float32)
        if window is None:
            data, mask = self._pad_or_crop(data, mask)
        if self.hflip and torch.rand(()) < 0.5:
            data, mask = data[:, :, ::-1], mask[:, ::-1]
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(data)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "chip": chip,
        }
        coords = self.coords.get(chip, {})
        if coords.get("temporal") is not None:  # (T=1, 2): [year, day of year]
            sample["temporal_coords"] = torch.tensor([coords["temporal"]], dtype=torch.float32)
        if coords.get("location") is not None:  # (2,): [lat, lon]
            sample["location_coords"] = torch.tensor(coords["location"], dtype=torch.float32)
        if coords.get("gsd_m") is not None:  # metres per pixel (Scale-MAE)
            sample["gsd_m"] = torch.tensor(coords["gsd_m"], dtype=torch.float32)
        return sample

    def _crop_window(self, image_path: Path) -> Any:
        """The crop as a rasterio window, so that only it is read; ``None`` when the chip
        is read whole (no crop, or a chip smaller than the crop, which is padded)."""
        if not self.crop_size:
            return None
        from rasterio.windows import Window

        from eofm.data.geotiff import raster_size

        if image_path not in self._sizes:  # one header read per chip and process
            self._sizes[image_path] = raster_size(image_path)
        h, w = self._sizes[image_path]
        size = self.crop_size
        if h < size or w < size:
            return None
        top, left = self._crop_origin(h, w)
        return Window(left, top, size, size)

    def _crop_origin(self, h: int, w: int) -> tuple[int, int]:
        size = self.crop_size
        if self.random_crop:
            # torch's RNG: seeded per worker by Lightning's seed_everything(workers=True)
            top = int(torch.randint(0, h - size + 1, ()))
            left = int(torch.randint(0, w - size + 1, ()))
            return top, left
        return (h - size) // 2, (w - size) // 2

    def _pad_or_crop(self, data: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = mask.shape
        if self.crop_size:  # a chip smaller than the crop: pad, then crop
            size = self.crop_size
            data, mask = pad_to(data, mask, max(size, h), max(size, w))
            top, left = self._crop_origin(*mask.shape)
            return data[:, top : top + size, left : left + size], mask[
                top : top + size, left : left + size
            ]
        m = self.pad_multiple
        return pad_to(data, mask, -(-h // m) * m, -(-w // m) * m)


def pad_to(
    data: np.ndarray, mask: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    if (h, w) == (height, width):
        return data, mask
    data = np.pad(data, ((0, 0), (0, height - h), (0, width - w)))
    mask = np.pad(mask, ((0, height - h), (0, width - w)), constant_values=IGNORE)
    return data, mask


def collate_chips(samples: list[dict]) -> dict:
    batch = {
        "image": torch.stack([s["image"] for s in samples]),
        "mask": torch.stack([s["mask"] for s in samples]),
        "chip": [s["chip"] for s in samples],
    }
    for key in ("temporal_coords", "location_coords", "gsd_m"):
        if key == "temporal_coords" and any(key in s for s in samples):
            # a sample without a date gets NaN: the encoder adds no temporal embedding to it
            known = next(s[key] for s in samples if key in s)
            batch[key] = torch.stack(
                [s.get(key, torch.full_like(known, torch.nan)) for s in samples]
            )
        elif key in samples[0]:
            batch[key] = torch.stack([s[key] for s in samples])
    return batch


class ChipDataModule(SplitLoaders, L.LightningDataModule):
    """Splits, checks, normalisation and loaders over labelled chips.

    A layout subclass finds its chips and calls :meth:`prepare` with the image/label
    pairs, the band indexes and the splits; every file is then checked up front.
    """

    #: The dataset of one split's chips (a subclass reads a release's own labels).
    chips_class: type[LabelledChips] = LabelledChips

    name = "chips"
    num_classes = 2
    ignore_index = IGNORE

    def prepare(
        self,
        *,
        root: Path,
        bands: Sequence[str],
        indexes: Sequence[int],
        pairs: Pairs,
        splits: dict[str, list[str]],
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        crop_size: int | None,
        eval_crop_size: int | None,
        batch_size: int,
        num_workers: int,
        hflip: bool,
        seed: int,
        pad_multiple: int,
        train_repeats: int,
        pin_memory: bool,
        dates: Mapping[str, tuple[int, int] | None] | None = None,
        temporal_coords: bool = False,
        location_coords: bool = False,
        gsd_from_data: bool = False,
        region_split: Mapping[str, Any] | None = None,
        image_bands: Sequence[str] | None = None,
    ) -> None:
        """``image_bands`` names every band of an image file in file order (what
        ``eofm predict --bands`` would give; None: the files name their bands or hold
        exactly ``bands``). ``dates`` are the chips' acquisition dates (year, day of year) where known;
        ``temporal_coords`` / ``location_coords`` ask for TL coordinates in the samples,
        ``gsd_from_data`` for each chip's metres per pixel (Scale-MAE); ``region_split``
        (``data.split``) replaces ``splits`` by held-out regions (:mod:`eofm.data.regions`)."""
        self.root, self.bands, self.indexes = root, list(bands), list(indexes)
        self.image_bands = list(image_bands) if image_bands else None
        self.pairs = dict(pairs)
        self.regions: dict[str, str | None] = {}
        self.id_test: list[str] = []
        listed = pairs if region_split else [c for chips in splits.values() for c in chips]
        self.excluded: dict[str, str] = {}
        for chip in listed:
            reason = chip_status(*self.pairs[chip], self.indexes, chip)
            if reason:
                self.excluded[chip] = reason
        for chip, reason in self.excluded.items():
            log.warning("%s chip %s: %s; left out of training.", self.name, chip, reason)
        if region_split:  # chips without supervision go to no split, so shares are of usable ones
            splits = self._region_splits(region_split)
        self.splits = splits
        self.splits["train"] = [c for c in self.splits["train"] if c not in self.excluded]
        if not self.splits["train"]:
            raise EofmError(
                f"No usable training chip under {self.root} (all were excluded: {self.excluded})."
            )
        if mean is None or std is None:
            mean, std = band_statistics(
                [self.pairs[c][0] for c in self.splits["train"]], self.indexes, where=self.root
            )
        self.mean, self.std = list(mean), list(std)
        if len(self.mean) != len(self.bands) or len(self.std) != len(self.bands):
            raise EofmError(
                f"mean/std have {len(self.mean)}/{len(self.std)} values for {len(self.bands)} bands."
            )
        self.crop_size, self.eval_crop_size = crop_size, eval_crop_size
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.hflip, self.seed, self.pad_multiple = hflip, seed, pad_multiple
        self.train_repeats = train_repeats
        self.coords = self._coords(dates or {}, temporal_coords, location_coords)
        if gsd_from_data:
            from eofm.data.coords import metres_per_pixel

            for chip, coords in self.coords.items():
                coords["gsd_m"] = metres_per_pixel(self.pairs[chip][0])
        self.uses_coords["gsd"] = gsd_from_data

    def _region_splits(self, value: Mapping[str, Any]) -> dict[str, list[str]]:
        """Splits by the region holding each chip's centre; keeps the regions and the
        in-distribution test chips for ``eofm test``."""
        from eofm.data.coords import raster_centre
        from eofm.data.regions import assign_regions, parse_region_split, split_by_region

        spec = parse_region_split(value, str(self.root))
        centres = {chip: raster_centre(image) for chip, (image, _) in self.pairs.items()}
        self.regions = assign_regions(centres, spec)
        usable = {c: r for c, r in self.regions.items() if c not in self.excluded}
        splits = split_by_region(usable, spec, f"the usable chips under {self.root}")
        self.id_test = splits.pop("id_test")
        log.info(
            "%s: regions %s",
            self.name,
            ", ".join(f"{k}: {len(v)} chips" for k, v in splits.items()),
        )
        return splits

    def _coords(
        self, dates: Mapping[str, tuple[int, int] | None], temporal: bool, location: bool
    ) -> dict[str, dict]:
        """TL coordinates per chip. A chip without a date has no temporal coordinate, for
        its own sample alone (see :func:`collate_chips`); the chips without one are named
        once. Only when no chip has a date does the run go without them."""
        from eofm.data.coords import raster_centre

        chips = [c for split in self.splits.values() for c in split] + self.id_test
        if temporal:
            undated = sorted(c for c in chips if not dates.get(c))
            if undated:
                everyone = len(undated) == len(chips)
                log.warning(
                    "%s: no acquisition date for %d chip(s) (%s%s); %s",
                    self.name,
                    len(undated),
                    ", ".join(undated[:3]),
                    ", ..." if len(undated) > 3 else "",
                    "the TL model trains without temporal coordinates."
                    if everyone
                    else "their samples go without a temporal coordinate, the others keep theirs.",
                )
                temporal = not everyone
        self.uses_coords = {"time": temporal, "location": location}
        return {
            c: {
                "temporal": dates.get(c) if temporal else None,
                "location": raster_centre(self.pairs[c][0]) if location else None,
            }
            for c in chips
        }

    def split_pairs(self, split: str) -> dict[str, tuple[Path, Path]]:
        chips = self.id_test if split == "id_test" else self.splits[split]
        return {chip: self.pairs[chip] for chip in chips}

    def dataset(self, split: str) -> LabelledChips:
        train = split == "train"
        return self.chips_class(
            self.split_pairs(split),
            self.indexes,
            self.mean,
            self.std,
            crop_size=self.crop_size if train else self.eval_crop_size,
            random_crop=train,
            hflip=train and self.hflip,
            pad_multiple=self.pad_multiple,
            repeats=self.train_repeats if train else 1,
            coords=self.coords,
        )

    def _loader(self, split: str) -> DataLoader:
        if not self.split_pairs(split):
            raise EofmError(f"The {split} split is empty (data under {self.root}).")
        dataset = self.dataset(split)
        train = split == "train"
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            # a last batch of one breaks BatchNorm in training; drop it when there are others
            drop_last=train and len(dataset) > self.batch_size,
            **order_options(len(dataset), self.seed, shuffle=train, batch_size=self.batch_size),
            collate_fn=collate_chips,
            **loader_options(self.num_workers, pin_memory=self.pin_memory),
        )

    @staticmethod
    def collate(samples: list[dict]) -> dict:
        return collate_chips(samples)

    def augmentations(self) -> list[str]:
        """Random training augmentations (the latent cache refuses when there are any)."""
        found = ["hflip"] if self.hflip else []
        chips = self.splits["train"]
        if self.crop_size and chips:
            from eofm.data.geotiff import raster_size

            h, w = raster_size(self.pairs[chips[0]][0])
            if self.crop_size < max(h, w):
                found.append(f"random {self.crop_size} px crops of {h}x{w} chips")
        return found

    def input_range(self, max_pixels: int = 200_000) -> dict:
        """The training data's dtype and per-band 1st, 25th, 50th, 75th and 99th percentiles
        (raw values), which ``eofm predict`` compares each scene with (recorded in
        ``model.json``)."""
        from eofm.data.geotiff import band_statistics, raster_dtype

        chips = self.splits["train"]
        per_chip = max(1, max_pixels // max(1, len(chips)))
        rng = np.random.default_rng(0)
        samples = []
        for chip in chips:
            image = read_raster(self.pairs[chip][0], bands=self.indexes)
            pixels = image.data[:, image.valid]
            if pixels.shape[1] > per_chip:
                pixels = pixels[:, rng.choice(pixels.shape[1], per_chip, replace=False)]
            samples.append(pixels)
        stats = band_statistics(np.concatenate(samples, axis=1))
        dtype = raster_dtype(self.pairs[chips[0]][0])
        return {"dtype": dtype, "bands": list(self.bands), **stats}

    def fingerprint(self, split: str) -> dict:
        """What the samples of ``split`` depend on (for the latent cache key)."""
        chips = self.splits[split]
        return {
            "dataset": self.name,
            "files": [str(p) for c in chips for p in self.pairs[c]],
            "split": split,
            "chips": chips,
            "bands": self.bands,
            "mean": self.mean,
            "std": self.std,
            "crop": self.crop_size if split == "train" else self.eval_crop_size,
            "pad_multiple": self.pad_multiple,
            "repeats": self.train_repeats if split == "train" else 1,
            "coords": self.uses_coords,
        }

"""Sen1Floods11: hand-labelled Sentinel-1/Sentinel-2 flood chips.

Bonafilia et al., "Sen1Floods11: a georeferenced dataset to train and test deep learning
flood algorithms for Sentinel-1", CVPR Workshops 2020 (github.com/cloudtostreet/Sen1Floods11).

Layout (v1.1, ``data/flood_events/HandLabeled/``)::

    S1Hand/<EVENT>_<ID>_S1Hand.tif        2 bands VV, VH, float32 dB, NaN = no data
    S2Hand/<EVENT>_<ID>_S2Hand.tif        13 Sentinel-2 L1C bands B1..B12 (with B8A), 0 = no data
    LabelHand/<EVENT>_<ID>_LabelHand.tif  int16: -1 no data, 0 not water, 1 water

Chips are 512x512 at about 10 m. The official splits are CSV files whose rows read
``<chip>_S1Hand.tif,<chip>_LabelHand.tif``.
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

from eofm.bands import SENTINEL1_BANDS, SENTINEL2_L1C_BANDS, band_indices, check_band_names
from eofm.data.geotiff import read_label, read_raster
from eofm.data.loading import loader_options
from eofm.data.splits import SPLITS, SplitLoaders, read_split_csv, split_by_event
from eofm.errors import EofmError

log = logging.getLogger(__name__)

OFFICIAL_SUBPATH = Path("v1.1") / "data" / "flood_events" / "HandLabeled"
IGNORE = -1


def find_sen1floods11_root(root: Path) -> Path:
    """The folder holding ``S1Hand/``/``S2Hand/`` and ``LabelHand/``.

    Accepts that folder itself, or any ancestor along the official
    ``v1.1/data/flood_events/HandLabeled/`` tree.
    """
    root = Path(root)
    if not root.is_dir():
        raise EofmError(f"Data root {root} does not exist or is not a folder (data.root).")
    parts = OFFICIAL_SUBPATH.parts
    candidates = [root] + [root.joinpath(*parts[i:]) for i in range(len(parts))]
    for candidate in candidates:
        if (candidate / "LabelHand").is_dir() and any(
            (candidate / f).is_dir() for f in ("S1Hand", "S2Hand")
        ):
            return candidate
    raise EofmError(
        f"Data root {root} holds no Sen1Floods11 chips: expected S1Hand/ or S2Hand/ with "
        f"LabelHand/ in it, or under {OFFICIAL_SUBPATH}/."
    )


def source_for_bands(bands: Sequence[str]) -> tuple[str, list[int]]:
    """Which chip folder holds ``bands``, and their 1-based indexes in its files."""
    names = check_band_names(bands, where="data.bands")
    s1 = [b for b in names if b in SENTINEL1_BANDS]
    if s1 and len(s1) != len(names):
        raise EofmError(
            f"data.bands mixes Sentinel-1 ({s1}) and Sentinel-2 bands "
            f"({[b for b in names if b not in SENTINEL1_BANDS]}); Sen1Floods11 stores them "
            "in separate chips. Use one sensor per recipe."
        )
    if s1:
        return "S1Hand", [i + 1 for i in band_indices(names, SENTINEL1_BANDS, where="S1Hand chips")]
    return "S2Hand", [i + 1 for i in band_indices(names, SENTINEL2_L1C_BANDS, where="S2Hand chips")]


def chip_paths(root: Path, folder: str, chip: str) -> tuple[Path, Path]:
    return root / folder / f"{chip}_{folder}.tif", root / "LabelHand" / f"{chip}_LabelHand.tif"


def discover_chips(root: Path, folder: str) -> list[str]:
    suffix = f"_{folder}.tif"
    chips = sorted(p.name[: -len(suffix)] for p in (root / folder).glob(f"*{suffix}"))
    if not chips:
        raise EofmError(f"{root / folder} holds no *{suffix} chips.")
    return chips


def chip_status(root: Path, folder: str, indexes: Sequence[int], chip: str) -> str | None:
    """Read a chip fully (so damaged files fail now); say why it carries no supervision."""
    image_path, label_path = chip_paths(root, folder, chip)
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
    root: Path, folder: str, indexes: Sequence[int], chips: Sequence[str]
) -> tuple[list[float], list[float]]:
    """Per-band mean and std over the valid pixels of ``chips`` (float64 running sums)."""
    total = np.zeros(len(indexes))
    squares = np.zeros(len(indexes))
    count = 0
    for chip in chips:
        image = read_raster(chip_paths(root, folder, chip)[0], bands=indexes)
        pixels = image.data[:, image.valid].astype(np.float64)
        total += pixels.sum(axis=1)
        squares += (pixels**2).sum(axis=1)
        count += pixels.shape[1]
    if count == 0:
        raise EofmError(
            f"No valid pixel in the training chips under {root / folder} to compute statistics."
        )
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


class Sen1Floods11(NonGeoDataset):
    """Chips of one split as ``{"image", "mask", "chip"}`` samples.

    ``image`` is normalised float32 ``(C, H, W)`` with invalid pixels set to 0; ``mask`` is
    int64 ``(H, W)`` with -1 wherever the label is -1 or any input band is invalid.
    """

    def __init__(
        self,
        root: Path,
        chips: Sequence[str],
        bands: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        crop_size: int | None = None,
        random_crop: bool = False,
        hflip: bool = False,
        pad_multiple: int = 1,
        repeats: int = 1,
    ) -> None:
        self.root = Path(root)
        self.chips = list(chips)
        self.repeats = max(1, repeats)
        self.folder, self.indexes = source_for_bands(bands)
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
        image_path, label_path = chip_paths(self.root, self.folder, chip)
        window = self._crop_window(image_path)
        image = read_raster(image_path, bands=self.indexes, window=window)
        label = read_label(label_path, window=window)
        mask = np.where(image.valid, label, IGNORE)
        data = np.where(image.valid, (image.data - self.mean) / self.std, 0.0).astype(np.float32)
        if window is None:
            data, mask = self._pad_or_crop(data, mask)
        if self.hflip and torch.rand(()) < 0.5:
            data, mask = data[:, :, ::-1], mask[:, ::-1]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(data)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "chip": chip,
        }

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
            data, mask = _pad(data, mask, max(size, h), max(size, w))
            top, left = self._crop_origin(*mask.shape)
            return data[:, top : top + size, left : left + size], mask[
                top : top + size, left : left + size
            ]
        m = self.pad_multiple
        return _pad(data, mask, -(-h // m) * m, -(-w // m) * m)


def _pad(
    data: np.ndarray, mask: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    if (h, w) == (height, width):
        return data, mask
    data = np.pad(data, ((0, 0), (0, height - h), (0, width - w)))
    mask = np.pad(mask, ((0, height - h), (0, width - w)), constant_values=IGNORE)
    return data, mask


class Sen1Floods11DataModule(SplitLoaders, L.LightningDataModule):
    """Splits, normalisation and loaders for Sen1Floods11; all files are checked up front."""

    num_classes = 2
    ignore_index = IGNORE

    def __init__(
        self,
        root: str | Path,
        bands: Sequence[str],
        *,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        split_csv: Mapping[str, str] | None = None,
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
    ) -> None:
        super().__init__()
        self.pin_memory = pin_memory
        self.root = find_sen1floods11_root(Path(root))
        self.bands = check_band_names(bands, where="data.bands")
        self.folder, self.indexes = source_for_bands(self.bands)
        if not (self.root / self.folder).is_dir():
            raise EofmError(
                f"Bands {self.bands} are stored in {self.folder}/ chips, but {self.root / self.folder} does not exist."
            )
        self.splits = self._splits(split_csv, split_fractions)
        self.excluded: dict[str, str] = {}
        for chips in self.splits.values():
            for chip in chips:
                reason = chip_status(self.root, self.folder, self.indexes, chip)
                if reason:
                    self.excluded[chip] = reason
        for chip, reason in self.excluded.items():
            log.warning("Sen1Floods11 chip %s: %s; left out of training.", chip, reason)
        self.splits["train"] = [c for c in self.splits["train"] if c not in self.excluded]
        if not self.splits["train"]:
            raise EofmError(
                f"No usable training chip under {self.root} (all were excluded: {self.excluded})."
            )
        if mean is None or std is None:
            mean, std = band_statistics(self.root, self.folder, self.indexes, self.splits["train"])
        self.mean, self.std = list(mean), list(std)
        if len(self.mean) != len(self.bands) or len(self.std) != len(self.bands):
            raise EofmError(
                f"mean/std have {len(self.mean)}/{len(self.std)} values for {len(self.bands)} bands."
            )
        self.crop_size, self.eval_crop_size = crop_size, eval_crop_size
        self.batch_size, self.num_workers = batch_size, num_workers
        self.hflip, self.seed, self.pad_multiple = hflip, seed, pad_multiple
        self.train_repeats = train_repeats
        log.info(
            "Sen1Floods11 %s: %s",
            self.folder,
            ", ".join(f"{s} {len(c)} chips" for s, c in self.splits.items()),
        )

    def _splits(
        self, split_csv: Mapping[str, str] | None, fractions: Sequence[float]
    ) -> dict[str, list[str]]:
        available = discover_chips(self.root, self.folder)
        if not split_csv:
            return split_by_event(available, fractions)
        unknown = set(split_csv) - set(SPLITS)
        if unknown:
            raise EofmError(
                f"data.split_csv has unknown split(s) {sorted(unknown)}; use {list(SPLITS)}."
            )
        on_disk = set(available)
        splits = {}
        for split in SPLITS:
            if split not in split_csv:
                raise EofmError(f"data.split_csv lacks the '{split}' split.")
            path = Path(split_csv[split])
            if not path.is_absolute():  # relative split files live under the data root
                path = self.root / path
            chips = read_split_csv(path)
            missing = [c for c in chips if c not in on_disk]
            if missing:
                raise EofmError(
                    f"Split file {path} lists chip {missing[0]}, but {chip_paths(self.root, self.folder, missing[0])[0]} does not exist."
                )
            splits[split] = chips
        return splits

    def dataset(self, split: str) -> Sen1Floods11:
        train = split == "train"
        return Sen1Floods11(
            self.root,
            self.splits[split],
            self.bands,
            self.mean,
            self.std,
            crop_size=self.crop_size if train else self.eval_crop_size,
            random_crop=train,
            hflip=train and self.hflip,
            pad_multiple=self.pad_multiple,
            repeats=self.train_repeats if train else 1,
        )

    def _loader(self, split: str) -> DataLoader:
        if not self.splits[split]:
            raise EofmError(f"The {split} split is empty (data under {self.root}).")
        generator = torch.Generator().manual_seed(self.seed)
        dataset = self.dataset(split)
        train = split == "train"
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            # a last batch of one breaks BatchNorm in training; drop it when there are others
            drop_last=train and len(dataset) > self.batch_size,
            generator=generator,
            collate_fn=_collate_chips,
            **loader_options(self.num_workers, pin_memory=self.pin_memory),
        )

    @staticmethod
    def collate(samples: list[dict]) -> dict:
        return _collate_chips(samples)

    def augmentations(self) -> list[str]:
        """Random training augmentations (the latent cache refuses when there are any)."""
        found = ["hflip"] if self.hflip else []
        chips = self.splits["train"]
        if self.crop_size and chips:
            from eofm.data.geotiff import raster_size

            h, w = raster_size(chip_paths(self.root, self.folder, chips[0])[0])
            if self.crop_size < max(h, w):
                found.append(f"random {self.crop_size} px crops of {h}x{w} chips")
        return found

    def input_range(self, max_pixels: int = 200_000) -> dict:
        """The training data's dtype and per-band 1st/99th percentiles (raw values), which
        ``eofm predict`` compares each scene with (recorded in ``model.json``)."""
        from eofm.data.geotiff import band_percentiles, raster_dtype

        chips = self.splits["train"]
        per_chip = max(1, max_pixels // max(1, len(chips)))
        rng = np.random.default_rng(0)
        samples = []
        for chip in chips:
            image = read_raster(chip_paths(self.root, self.folder, chip)[0], bands=self.indexes)
            pixels = image.data[:, image.valid]
            if pixels.shape[1] > per_chip:
                pixels = pixels[:, rng.choice(pixels.shape[1], per_chip, replace=False)]
            samples.append(pixels)
        p01, p99 = band_percentiles(np.concatenate(samples, axis=1))
        dtype = raster_dtype(chip_paths(self.root, self.folder, chips[0])[0])
        return {"dtype": dtype, "bands": list(self.bands), "p01": p01, "p99": p99}

    def fingerprint(self, split: str) -> dict:
        """What the samples of ``split`` depend on (for the latent cache key)."""
        chips = self.splits[split]
        return {
            "dataset": "sen1floods11",
            "files": [str(p) for c in chips for p in chip_paths(self.root, self.folder, c)],
            "split": split,
            "chips": chips,
            "bands": self.bands,
            "mean": self.mean,
            "std": self.std,
            "crop": self.crop_size if split == "train" else self.eval_crop_size,
            "pad_multiple": self.pad_multiple,
            "repeats": self.train_repeats if split == "train" else 1,
        }


def _collate_chips(samples: list[dict]) -> dict:
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "mask": torch.stack([s["mask"] for s in samples]),
        "chip": [s["chip"] for s in samples],
    }

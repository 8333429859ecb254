"""HLS Burn Scars: Harmonized Landsat Sentinel-2 scenes with hand-made burn-scar masks.

Phillips et al., "HLS Foundation Burnscars dataset" (NASA/IBM, 2023), released with
Prithvi-EO (Jakubik et al., arXiv:2310.18660). Layout, per scene::

    training/subsetted_512x512_HLS.S30.T10SEH.2018190.v1.4_merged.tif   6 bands: BLUE, GREEN,
        RED, NIR_NARROW, SWIR_1, SWIR_2 (HLS B02, B03, B04, B8A/B05, B11/B06, B12/B07),
        float32 reflectance
    training/subsetted_512x512_HLS.S30.T10SEH.2018190.v1.4.mask.tif     int16: -1 no data,
        0 not burned, 1 burn scar (``_mask.tif`` is accepted too)
    validation/...                                                       the same

``training/`` is the train split. ``validation/`` is divided into val and test by MGRS
tile (``T10SEH``), in the ratio of ``data.split_fractions``' last two numbers, so that a
tile never serves both model selection and the final score. The acquisition date is the
``YYYYDDD`` in the name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eofm.bands import HLS_PRITHVI_BANDS, band_indices, check_band_names
from eofm.data.chips import ChipDataModule
from eofm.data.hls_burn_scars_layout import (  # noqa: F401 - re-exported
    FOLDERS,
    IMAGE_SUFFIX,
    MASK_SUFFIXES,
    scene_date,
    scene_pairs,
    scene_tile,
    split_by_tile,
)
from eofm.errors import EofmError

log = logging.getLogger(__name__)


class HLSBurnScarsDataModule(ChipDataModule):
    """Splits, normalisation and loaders for HLS Burn Scars; all files checked up front."""

    name = "hls_burn_scars"

    def __init__(
        self,
        root: str | Path,
        bands: Sequence[str] = HLS_PRITHVI_BANDS,
        *,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        reflectance_scale: float = 10000.0,
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
        root = Path(root)
        missing = [f for f in FOLDERS if not (root / f).is_dir()]
        if missing:
            raise EofmError(
                f"Data root {root} is not an HLS Burn Scars folder: {missing[0]}/ is missing "
                "(data.root holds training/ and validation/)."
            )
        names = check_band_names(bands, where="data.bands")
        indexes = [i + 1 for i in band_indices(names, HLS_PRITHVI_BANDS, where="HLS scenes")]
        train = scene_pairs(root / "training")
        held_out = scene_pairs(root / "validation")
        f_val, f_test = split_fractions[1], split_fractions[2]
        val, test = split_by_tile(list(held_out), f_val / max(f_val + f_test, 1e-12))
        if mean is not None and std is not None:  # statistics are in reflectance x scale
            mean = [m / reflectance_scale for m in mean]
            std = [s / reflectance_scale for s in std]
        self.reflectance_scale = reflectance_scale
        self.prepare(
            root=root,
            bands=names,
            indexes=indexes,
            pairs={**train, **held_out},
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
            dates={scene: scene_date(scene) for scene in {**train, **held_out}},
            temporal_coords=temporal_coords,
            location_coords=location_coords,
            gsd_from_data=gsd_from_data,
            region_split=split,
            image_bands=HLS_PRITHVI_BANDS,
        )
        log.info(
            "HLS Burn Scars: %s", ", ".join(f"{s} {len(c)} scenes" for s, c in self.splits.items())
        )

"""BigEarthNet v2 (reBEN) in the released layout, generated small, for tests.

The layout is the one torchgeo 0.8.1's ``BigEarthNetV2`` reads (see
``eofm/data/bigearthnet_config.py``), as the release (hf.co/datasets/torchgeo/bigearthnet,
V2; Clasen et al. 2024) has it: ``metadata.parquet`` (``patch_id``, ``labels``, ``split``
of ``train``/``validation``/``test``, ``country``, ``s1_name``, ``s2v1_name``,
``contains_seasonal_snow``, ``contains_cloud_or_shadow``), the S2 patches'
single-band uint16 files at their native resolution (10 m bands 120 px, 20 m 60 px, 60 m
20 px), the S1 patches' float32 VV/VH (dB), and the CLC 2018 reference maps (uint16).
Patch names follow the release (``S2A_MSIL2A_<date>_N9999_R022_T33UUP_<row>_<col>``).
Each class lifts a few bands, so a tiny model can learn something.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin

from eofm.data.bigearthnet_config import BEN_S2_CODES

#: Native size of each S2 band in a 1200 m patch (10, 20 or 60 m).
S2_SIZE = {c: 120 for c in ("B02", "B03", "B04", "B08")} | {"B01": 20, "B09": 20}
S2_SIZE |= {c: 60 for c in ("B05", "B06", "B07", "B8A", "B11", "B12")}
#: A CLC 2018 code of each of the 19 classes (torchgeo's ``BigEarthNetV2.clc_codes``).
CLC = [
    111,
    121,
    211,
    221,
    231,
    242,
    243,
    244,
    311,
    312,
    313,
    321,
    322,
    324,
    331,
    411,
    421,
    511,
    523,
]


def _write(path: Path, data: np.ndarray, metres: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1,
        "dtype": data.dtype, "crs": "EPSG:32633",
        "transform": from_origin(399960.0, 5300040.0, metres, metres),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def make_bigearthnet(
    root: Path,
    classes: list[str],
    *,
    per_split: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Write the release's four parts under ``root``; each patch gets 1 to 3 labels."""
    per_split = per_split or {"train": 8, "validation": 4, "test": 4}
    rng = np.random.default_rng(seed)
    rows, n = [], 0
    for split, count in per_split.items():
        for _ in range(count):
            n += 1
            labels = sorted(rng.choice(len(classes), size=int(rng.integers(1, 4)), replace=False))
            tile = f"S2A_MSIL2A_2017061{n % 10}T101031_N9999_R022_T33UUP"
            patch = f"{tile}_{n}_{n + 10}"
            s1_scene = f"S1A_IW_GRDH_1SDV_2017061{n % 10}T165043"
            s1_name = f"{s1_scene}_33UUP_{n}_{n + 10}"
            for k, code in enumerate(BEN_S2_CODES):
                size = S2_SIZE[code]
                lift = sum(800 for i in labels if (i + k) % 4 == 0)
                values = 1000 + lift + rng.normal(0, 100, (size, size))
                _write(
                    root / "BigEarthNet-S2" / tile / patch / f"{patch}_{code}.tif",
                    np.clip(values, 0, 20000).astype(np.uint16),
                    1200 / size,
                )
            for band in ("VV", "VH"):
                values = rng.normal(-15, 3, (120, 120)).astype(np.float32)
                _write(
                    root / "BigEarthNet-S1" / s1_scene / s1_name / f"{s1_name}_{band}.tif",
                    values,
                    10,
                )
            reference = np.full((120, 120), CLC[labels[0]], np.uint16)
            _write(
                root / "Reference_Maps" / tile / patch / f"{patch}_reference_map.tif", reference, 10
            )
            rows.append(
                {
                    "patch_id": patch,
                    "labels": np.array([classes[i] for i in labels], dtype=object),
                    "split": split,
                    "country": "Austria",
                    "s1_name": s1_name,
                    "s2v1_name": patch,
                    "contains_seasonal_snow": False,
                    "contains_cloud_or_shadow": False,
                }
            )
    pd.DataFrame.from_records(rows).to_parquet(root / "metadata.parquet")
    return root

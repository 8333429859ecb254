"""Rebuild samples/sen1floods11/ from the real chips in ../shared/data/sen1floods11.

Each bundled chip is a 256x256 window of a real 512x512 Sen1Floods11 chip, written with
the window's exact georeferencing, dtype and nodata, as a tiled DEFLATE GeoTIFF.

    python samples/make_sen1floods11_samples.py [SOURCE_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import rasterio
from rasterio.windows import Window

HERE = Path(__file__).resolve().parent
SOURCE = (
    Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "shared" / "data" / "sen1floods11"
)
OUT = HERE / "sen1floods11"

#: chip -> (row, col) of the 256x256 window: chosen so that each crop holds both classes
#: where the chip has them.
WINDOWS = {
    "India_900498": (192, 0),
    "Nigeria_812045": (192, 64),
    "Sri-Lanka_534068": (0, 0),
    "Spain_6860600": (0, 256),
    "Ghana_53713": (0, 0),
}
SPLITS = {
    "train": ["India_900498", "Spain_6860600", "Ghana_53713"],
    "valid": ["Sri-Lanka_534068"],
    "test": ["Nigeria_812045"],
}


def crop(src: Path, dst: Path, row: int, col: int, size: int = 256) -> None:
    with rasterio.open(src) as ds:
        window = Window(col, row, size, size)
        data = ds.read(window=window)
        profile = ds.profile | {
            "width": size,
            "height": size,
            "transform": ds.window_transform(window),
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
            "zlevel": 9,
            "predictor": 3 if data.dtype.kind == "f" else 2,
        }
        descriptions = ds.descriptions
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        for i, text in enumerate(descriptions, start=1):
            if text:
                out.set_band_description(i, text)


def main() -> None:
    for chip, (row, col) in WINDOWS.items():
        for folder in ("S1Hand", "LabelHand"):
            name = f"{chip}_{folder}.tif"
            crop(SOURCE / folder / name, OUT / folder / name, row, col)
    (OUT / "splits").mkdir(exist_ok=True)
    for split, chips in SPLITS.items():
        rows = [f"{c}_S1Hand.tif,{c}_LabelHand.tif" for c in chips]
        (OUT / "splits" / f"flood_{split}_data.csv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()

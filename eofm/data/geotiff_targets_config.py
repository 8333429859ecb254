"""The ``data`` keys of GeoTIFF images with GeoTIFF targets (``data.name: geotiff_targets``).

The layout users bring for canopy height, land-surface temperature, biomass and the like
(the pairing TerraTorch's ``GenericNonGeoPixelwiseRegressionDataModule`` reads)::

    <root>/image/<stem>.tif    the bands of data.bands, in that order
    <root>/target/<stem>.tif   one band, the same grid (size, transform, CRS); pixels at
                               the file's nodata value (or NaN) are never scored

Every image needs its target; the pairs split into train/val/test by
``data.split_fractions``, in an order fixed by a hash of each stem (so adding a file
moves no other). Everything here is light (rasterio headers and target bands; no torch),
run by ``fit`` before a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eofm.data.config import DataConfig, check_bands_and_statistics
from eofm.errors import EofmError, RecipeError
from eofm.typed_config import check_positive, option

IMAGE_DIR, TARGET_DIR = "image", "target"
SUFFIXES = (".tif", ".tiff")


@dataclass
class GeoTIFFTargetsConfig(DataConfig):
    """Image/target GeoTIFF pairs for pixel-wise regression."""

    bands: list[str] = option(
        help="the image files' bands by name, in file order (the model reads them all)",
        factory=lambda: ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"],
    )
    crop_size: int | None = option(None, "random training crop in px (null: whole chips)")
    hflip: bool = option(True, "random horizontal flips in training")
    mean: list[float] | None = option(None, "per-band mean (default: the backbone's)")
    std: list[float] | None = option(None, "per-band std (default: the backbone's)")

    def split_description(self) -> str:
        return (
            f"image/target pairs split by a hash of their names, fractions "
            f"{self.split_fractions} (train/val/test)."
        )

    def validate(self, where: str) -> None:
        super().validate(where)
        check_bands_and_statistics(self, where)
        check_positive(self, where, "data.crop_size")

    def pairs(self, where: str = "the recipe") -> dict[str, tuple[Path, Path]]:
        return find_pairs(Path(self.root), where)

    def check_files(self, where: str) -> None:
        """Every pair: the image holds ``data.bands``, the target one band on the image's
        grid, with at least one valid pixel (read whole: rasterio, no torch)."""
        super().check_files(where)
        for image, target in self.pairs(where).values():
            check_pair(image, target, len(self.bands))


def find_pairs(root: Path, where: str = "the recipe") -> dict[str, tuple[Path, Path]]:
    """stem -> (image, target); an image without its target is an error naming it."""
    images = root / IMAGE_DIR
    if not images.is_dir() or not (root / TARGET_DIR).is_dir():
        raise RecipeError(
            f"data.root {root} in {where} must hold {IMAGE_DIR}/ and {TARGET_DIR}/ "
            "(GeoTIFFs of the same names: image/<stem>.tif and target/<stem>.tif)."
        )
    found = sorted(p for p in images.iterdir() if p.suffix.lower() in SUFFIXES)
    if not found:
        raise RecipeError(f"{images} (data.root in {where}) holds no GeoTIFF image.")
    pairs = {}
    for image in found:
        target = root / TARGET_DIR / image.name
        if not target.is_file():
            raise RecipeError(
                f"{image} has no target: {target} is missing (each image needs a target "
                "GeoTIFF of the same name)."
            )
        pairs[image.stem] = (image, target)
    return pairs


def _grid(path: Path) -> dict[str, Any]:
    import rasterio

    try:
        with rasterio.open(path) as ds:
            return {
                "size": (ds.height, ds.width),
                "transform": tuple(round(v, 9) for v in ds.transform[:6]),
                "crs": ds.crs.to_string() if ds.crs else None,
                "count": ds.count,
            }
    except rasterio.errors.RasterioIOError as exc:
        raise EofmError(f"{path}: not a readable GeoTIFF ({exc}).", exit_code=2) from None


def check_pair(image: Path, target: Path, bands: int) -> None:
    """One image/target pair, each error naming the file."""
    picture, truth = _grid(image), _grid(target)
    if picture["count"] != bands:
        raise EofmError(
            f"{image}: {picture['count']} bands; data.bands names {bands}.", exit_code=2
        )
    if truth["count"] != 1:
        raise EofmError(f"{target}: {truth['count']} bands; a target has one.", exit_code=2)
    for key in ("size", "transform", "crs"):
        if picture[key] != truth[key]:
            raise EofmError(
                f"{target} is not on the grid of {image}: {key} {truth[key]} vs "
                f"{picture[key]} (an image and its target must share size, transform and CRS).",
                exit_code=2,
            )
    if not valid_target(target)[1].any():
        raise EofmError(
            f"{target}: no valid pixel (every value is its nodata value or NaN); a target "
            "needs at least one pixel to score.",
            exit_code=2,
        )


def valid_target(target: Path, window: Any = None) -> tuple[Any, Any]:
    """``(values float32 (H, W), valid bool (H, W))`` of a target: finite and not at the
    file's nodata value."""
    import numpy as np
    import rasterio

    with rasterio.open(target) as ds:
        raw = ds.read(1, window=window)
        nodata = ds.nodata
    values = raw.astype(np.float32)
    valid = np.isfinite(values)
    if nodata is not None and not np.isnan(nodata):
        valid &= raw != nodata
    return values, valid

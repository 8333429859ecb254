"""The released layout of multi-temporal crop classification, read from file lists and
headers only (no torch), so that ``fit`` checks it before a model loads.

IBM/NASA, "Multi-Temporal Crop Classification" (Hugging Face dataset
``ibm-nasa-geospatial/multi-temporal-crop-classification``, CC-BY-4.0, its ``README.md``
dataset card; the same card at source.coop ``clarkcga/multi-temporal-crop-classification``).
Layout, as the release unpacks (``training_chips.tgz``, ``validation_chips.tgz``)::

    training_chips/chip_XXX_YYY_merged.tif   18 bands: BLUE, GREEN, RED, NIR_NARROW (B8A),
        SWIR_1, SWIR_2 "repeated three times for three observations throughout the
        growing season" (frame-major: band 7 is the second date's BLUE); 224 x 224 px
        at 30 m; HLS surface reflectance x 10000 (the means of the card's fine-tuning
        config, 494.9 .. 2968.9, are in these units); HLS's fill value is -9999
    training_chips/chip_XXX_YYY.mask.tif     1 band, CDL classes: 0 "No Data",
        1 Natural Vegetation .. 13 Other
    validation_chips/...                      the same
    training_data.txt, validation_data.txt   the chip ids of each split, one per line
        (at the root, as on the Hub; TerraTorch's ``MultiTemporalCropClassification``
        reads them inside the chips folder, which is accepted too)

Each chip's three acquisition dates, where the root holds TerraTorch's metadata table
``chip_df_final.csv`` (columns ``chip_id``, ``first_img_date``, ``middle_img_date``,
``last_img_date``, ``YYYY-MM-DD``; TerraTorch's ``metadata_file_name`` and
``date_columns``), are the TL temporal coordinates of that chip's frames; otherwise the
dates of ``data.frames`` serve every chip.

The class names and the ``reduce_zero_label`` convention (mask value v is class v - 1,
0 is never scored) follow NASA-IMPACT/hls-foundation-os
``configs/multi_temporal_crop_classification.py`` (``CLASSES``, ``img_suffix``,
``seg_map_suffix``, ``reduce_zero_label=True``) and TerraTorch
``terratorch/datasets/multi_temporal_crop_classification.py``. That config reshapes the
18 bands as (6 bands, 3 frames), which reads them band-major; the card says frame-major,
and so does its normalisation (the 6 means repeated 3 times), which eofm follows.
"""

from __future__ import annotations

from pathlib import Path

from eofm.errors import EofmError, RecipeError

IMAGE_SUFFIX = "_merged.tif"
MASK_SUFFIX = ".mask.tif"
#: split folder -> its list file
SPLITS = {"training_chips": "training_data.txt", "validation_chips": "validation_data.txt"}
BANDS_PER_FRAME = 6
FRAMES = 3
#: HLS v2.0 surface reflectance fill value (HLS v2.0 User Guide, Table 4).
HLS_FILL = -9999
#: Mask value 0 is "No Data"; classes are 1..13 in the files, 0..12 in eofm.
CLASS_NAMES = (
    "Natural Vegetation",
    "Forest",
    "Corn",
    "Soybeans",
    "Wetlands",
    "Developed/Barren",
    "Open Water",
    "Winter Wheat",
    "Alfalfa",
    "Fallow/Idle Cropland",
    "Cotton",
    "Sorghum",
    "Other",
)


#: TerraTorch's per-chip metadata: the acquisition date of each frame
DATES_FILE = "chip_df_final.csv"
DATE_COLUMNS = ("first_img_date", "middle_img_date", "last_img_date")


def chip_dates(root: Path) -> dict[str, list[tuple[int, int]]]:
    """chip id -> (year, day of year) of each frame, from ``DATES_FILE`` when the root
    has it ({} otherwise); a row without a valid date is an error naming it."""
    import csv

    from eofm.data.coords import parse_date

    table = root / DATES_FILE
    if not table.is_file():
        return {}
    dates = {}
    with table.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                dates[row["chip_id"]] = [parse_date(row[c]) for c in DATE_COLUMNS]
            except (KeyError, TypeError, EofmError) as exc:
                raise EofmError(
                    f"{table} line {line}: no valid chip_id and {', '.join(DATE_COLUMNS)} ({exc})."
                ) from None
    return dates


def list_file(root: Path, folder: str) -> Path:
    """The split's list: ``<root>/<name>.txt`` (the Hub), else inside the chips folder."""
    name = SPLITS[folder]
    for candidate in (root / name, root / folder / name):
        if candidate.is_file():
            return candidate
    raise EofmError(
        f"{root} has no {name} (looked in {root} and {root / folder}): data.root holds the "
        "release's training_chips/, validation_chips/ and the training_data.txt / "
        "validation_data.txt lists."
    )


def chip_ids(listing: Path) -> list[str]:
    """Chip ids of a list file (one per line; a ``_merged.tif`` suffix is dropped)."""
    ids = []
    for line in listing.read_text().splitlines():
        chip = line.strip().removesuffix(IMAGE_SUFFIX)
        if chip:
            ids.append(chip)
    if not ids:
        raise EofmError(f"{listing} lists no chip.")
    return ids


def split_pairs(root: Path, folder: str) -> dict[str, tuple[Path, Path]]:
    """chip id -> (image, mask) of the chips a split's list names; a missing file is an error."""
    listing = list_file(root, folder)
    pairs = {}
    for chip in chip_ids(listing):
        image = root / folder / f"{chip}{IMAGE_SUFFIX}"
        mask = root / folder / f"{chip}{MASK_SUFFIX}"
        for path in (image, mask):
            if not path.is_file():
                raise EofmError(f"Chip {chip} listed in {listing} has no {path}.")
        pairs[chip] = (image, mask)
    return pairs


def release_pairs(root: Path) -> dict[str, dict[str, tuple[Path, Path]]]:
    """Each split folder's chips."""
    missing = [f for f in SPLITS if not (root / f).is_dir()]
    if missing:
        raise EofmError(
            f"Data root {root} is not a multi-temporal crop classification folder: "
            f"{missing[0]}/ is missing (data.root holds training_chips/ and validation_chips/)."
        )
    return {folder: split_pairs(root, folder) for folder in SPLITS}


def check_band_count(image: Path, frames: int = FRAMES) -> None:
    """A chip holds ``frames`` x 6 bands (header read only)."""
    import rasterio

    try:
        with rasterio.open(image) as ds:
            count = ds.count
    except Exception as exc:
        raise EofmError(f"Cannot read raster {image}: {exc}") from None
    if count != frames * BANDS_PER_FRAME:
        raise EofmError(
            f"Chip {image} has {count} bands; the release's chips hold {frames} frames x "
            f"{BANDS_PER_FRAME} bands = {frames * BANDS_PER_FRAME}."
        )


def check_release_layout(root: str | Path, where: str) -> None:
    """Folders, lists, every listed file and every chip's band count (headers only)."""
    try:
        for pairs in release_pairs(Path(root)).values():
            for image, _ in pairs.values():
                check_band_count(image)
    except EofmError as exc:
        raise RecipeError(f"{exc} (data.root in {where})") from None

"""Sen1Floods11: hand-labelled Sentinel-1/Sentinel-2 flood chips.

Bonafilia et al., "Sen1Floods11: a georeferenced dataset to train and test deep learning
flood algorithms for Sentinel-1", CVPR Workshops 2020 (github.com/cloudtostreet/Sen1Floods11).

Layout (v1.1, ``data/flood_events/HandLabeled/``)::

    S1Hand/<EVENT>_<ID>_S1Hand.tif        2 bands VV, VH, float32 dB, NaN = no data
    S2Hand/<EVENT>_<ID>_S2Hand.tif        13 Sentinel-2 L1C bands B1..B12 (with B8A), 0 = no data
    LabelHand/<EVENT>_<ID>_LabelHand.tif  int16: -1 no data, 0 not water, 1 water

Chips are 512x512 at about 10 m. The official splits are CSV files whose rows read
``<chip>_S1Hand.tif,<chip>_LabelHand.tif``.

``data.bands`` names the bands to read: all from S1Hand, all from S2Hand, or from both
(multi-modal input, e.g. for TerraMind): then each chip's two rasters are stacked in the
order of ``data.bands`` (:mod:`eofm.data.sen1floods11_stack`), and every chip used must
have both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eofm.bands import SENTINEL1_BANDS, SENTINEL2_L1C_BANDS, check_band_names
from eofm.data.chips import ChipDataModule, LabelledChips
from eofm.data.sen1floods11_layout import (  # noqa: F401 - re-exported
    OFFICIAL_SUBPATH,
    chip_folders,
    chip_paths,
    chip_splits,
    chips_on_disk,
    complete_chips,
    discover_chips,
    find_sen1floods11_root,
    source_for_bands,
)
from eofm.errors import EofmError

log = logging.getLogger(__name__)

METADATA_FILE = "Sen1Floods11_Metadata.geojson"


def find_metadata(root: Path) -> Path | None:
    """``Sen1Floods11_Metadata.geojson`` in the chips' folder or one of its ancestors
    (the release keeps it at the top of ``v1.1/``)."""
    for folder in [root, *list(root.parents)[:4]]:
        if (folder / METADATA_FILE).is_file():
            return folder / METADATA_FILE
    return None


def event_dates(root: Path, folder: str, chips: Sequence[str]) -> dict[str, tuple[int, int] | None]:
    """(year, day of year) of each chip's flood event: the Sentinel-1 date for S1Hand chips,
    the Sentinel-2 date for S2Hand chips, from the metadata file.

    A chip is matched to its event by name (``<EVENT>_<ID>``, the metadata's ``location``)
    and, when the name is not an event's, by place: the event whose polygon covers most of
    the chip's footprint. The release names the Mekong chips ``Mekong_*`` while their
    event's ``location`` is ``Cambodia`` (Bonafilia et al., CVPR-W 2020, Table 1; the
    dataset's ``Sen1Floods11_Metadata.geojson``). Chips matched neither way (or all, when
    there is no metadata file) get ``None``.
    """
    import json

    from eofm.data.coords import parse_date
    from eofm.data.splits import chip_event

    path = find_metadata(root)
    if path is None:
        log.warning("No %s beside %s: chips have no acquisition dates.", METADATA_FILE, root)
        return dict.fromkeys(chips)
    try:
        features = json.loads(path.read_text(encoding="utf-8"))["features"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EofmError(f"Cannot read the flood-event metadata {path}: {exc}") from None
    key = "s1_date" if folder == "S1Hand" else "s2_date"
    by_event, polygons = {}, []
    for feature in features:
        props = feature.get("properties") or {}
        if props.get("location") and props.get(key):
            by_event[props["location"]] = parse_date(props[key])
            if feature.get("geometry"):
                polygons.append((props["location"], feature["geometry"]))
    dates = {chip: by_event.get(chip_event(chip)) for chip in chips}
    for chip in [c for c, d in dates.items() if d is None]:
        event = event_by_place(root / folder / f"{chip}_{folder}.tif", polygons)
        if event is not None:
            log.info("%s: matched by place to the flood event %s.", chip, event)
            dates[chip] = by_event[event]
    return dates


def event_by_place(image: Path, polygons: Sequence[tuple[str, dict]]) -> str | None:
    """The event whose polygon (GeoJSON, EPSG:4326) covers most of ``image``'s footprint,
    or None when none touches it (or the image cannot be read)."""
    import rasterio
    from rasterio.warp import transform_bounds
    from shapely.geometry import box, shape

    try:
        with rasterio.open(image) as ds:
            bounds = ds.bounds
            if ds.crs is not None and not ds.crs.is_geographic:
                bounds = transform_bounds(ds.crs, "EPSG:4326", *bounds)
    except rasterio.errors.RasterioIOError:
        return None
    footprint = box(*bounds)
    overlaps = [(shape(geometry).intersection(footprint).area, name) for name, geometry in polygons]
    area, name = max(overlaps, default=(0.0, None))
    return name if area > 0 else None


def chip_images(root: Path, chips: Sequence[str], bands: Sequence[str]) -> dict[str, Path]:
    """The image each chip's ``bands`` are read from: its S1Hand or S2Hand file, or, when
    ``bands`` come from both, a VRT stacking the two in ``bands`` order."""
    folders = chip_folders(bands)
    if len(folders) == 1:
        return {chip: chip_paths(root, folders[0], chip)[0] for chip in chips}
    from eofm.data.sen1floods11_stack import stack_chip

    return {chip: stack_chip(root, chip, bands) for chip in chips}


def chip_indexes(bands: Sequence[str]) -> list[int]:
    """The 1-based bands of :func:`chip_images`' images that hold ``bands``."""
    if len(chip_folders(bands)) == 1:
        return source_for_bands(bands)[1]
    return list(range(1, len(bands) + 1))  # the stack holds exactly ``bands``


class Sen1Floods11(LabelledChips):
    """Chips of one split as ``{"image", "mask", "chip"}`` samples (see ``eofm.data.chips``)."""

    def __init__(
        self,
        root: Path,
        chips: Sequence[str],
        bands: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        **options: Any,
    ) -> None:
        root = Path(root)
        images = chip_images(root, chips, bands)
        pairs = {chip: (images[chip], chip_paths(root, "LabelHand", chip)[1]) for chip in chips}
        super().__init__(pairs, chip_indexes(bands), mean, std, **options)


class Sen1Floods11DataModule(ChipDataModule):
    """Splits, normalisation and loaders for Sen1Floods11; all files are checked up front."""

    name = "sen1floods11"

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
        temporal_coords: bool = False,
        location_coords: bool = False,
        gsd_from_data: bool = False,
        split: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.root = find_sen1floods11_root(Path(root))
        self.bands = check_band_names(bands, where="data.bands")
        self.folders = chip_folders(self.bands)
        self.folder = self.folders[0]  # the chips' dates and names: S1Hand when both
        for folder in self.folders:
            if not (self.root / folder).is_dir():
                raise EofmError(
                    f"Bands {self.bands} are stored in {folder}/ chips, but {self.root / folder} does not exist."
                )
        on_disk = chips_on_disk(self.root, self.folders)
        splits = {} if split else chip_splits(self.root, on_disk, split_csv, split_fractions)
        chips = (
            complete_chips(self.root, on_disk)
            if split
            else sorted({c for listed in splits.values() for c in listed})
        )
        self.sources = {c: [chip_paths(self.root, f, c)[0] for f in self.folders] for c in chips}
        images = chip_images(self.root, chips, self.bands)
        image_bands = (
            self.bands
            if len(self.folders) > 1
            else SENTINEL1_BANDS
            if self.folder == "S1Hand"
            else SENTINEL2_L1C_BANDS
        )
        self.prepare(
            root=self.root,
            bands=self.bands,
            indexes=chip_indexes(self.bands),
            pairs={c: (images[c], chip_paths(self.root, "LabelHand", c)[1]) for c in chips},
            splits=splits,
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
            dates=event_dates(self.root, self.folder, chips) if temporal_coords else None,
            temporal_coords=temporal_coords,
            location_coords=location_coords,
            gsd_from_data=gsd_from_data,
            region_split=split,
            image_bands=image_bands,
        )
        log.info(
            "Sen1Floods11 %s: %s",
            " + ".join(self.folders),
            ", ".join(f"{s} {len(c)} chips" for s, c in self.splits.items()),
        )

    def fingerprint(self, split: str) -> dict:
        """As :meth:`ChipDataModule.fingerprint`, naming the chips' own files (not the
        stacks, which are rewritten under a new name by each process)."""
        out = dict(super().fingerprint(split))
        chips = self.id_test if split == "id_test" else self.splits[split]
        out["files"] = [str(p) for c in chips for p in (*self.sources[c], self.pairs[c][1])]
        return out

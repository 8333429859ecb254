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

from eofm.bands import SENTINEL1_BANDS, SENTINEL2_L1C_BANDS, check_band_names
from eofm.data.chips import ChipDataModule, LabelledChips
from eofm.data.sen1floods11_layout import (  # noqa: F401 - re-exported
    OFFICIAL_SUBPATH,
    chip_paths,
    chip_splits,
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
        folder, indexes = source_for_bands(bands)
        pairs = {chip: chip_paths(Path(root), folder, chip) for chip in chips}
        super().__init__(pairs, indexes, mean, std, **options)


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
        self.folder, self.indexes = source_for_bands(self.bands)
        if not (self.root / self.folder).is_dir():
            raise EofmError(
                f"Bands {self.bands} are stored in {self.folder}/ chips, but {self.root / self.folder} does not exist."
            )
        chips = discover_chips(self.root, self.folder)
        self.prepare(
            root=self.root,
            bands=self.bands,
            indexes=self.indexes,
            pairs={c: chip_paths(self.root, self.folder, c) for c in chips},
            splits={} if split else self._splits(chips, split_csv, split_fractions),
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
            image_bands=SENTINEL1_BANDS if self.folder == "S1Hand" else SENTINEL2_L1C_BANDS,
        )
        log.info(
            "Sen1Floods11 %s: %s",
            self.folder,
            ", ".join(f"{s} {len(c)} chips" for s, c in self.splits.items()),
        )

    def _splits(
        self,
        available: list[str],
        split_csv: Mapping[str, str] | None,
        fractions: Sequence[float],
    ) -> dict[str, list[str]]:
        return chip_splits(self.root, self.folder, available, split_csv, fractions)

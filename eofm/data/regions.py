"""Geographic splits: samples assigned to train/val/test by the region they lie in.

A model that maps floods or fires is used in places it has not seen; a random split
hides how much worse it does there (the geographic shift RainShift measures: Gupta et
al., "RainShift: A Benchmark for Precipitation Downscaling Across Geographies", 2025).
``data.split`` holds out whole regions instead::

    data:
      split: {by: region, regions: basins.geojson, column: name, test: [Rhine], val: [Po]}
      split: {by: country, column: continent, test: [Asia], val: [Europe]}
      split: {by: latitude_band, width: 15, test: [15N-30N]}

Each sample's footprint centroid (a chip's bounds, a datacube pixel, a weather grid
cell) falls in one region: the polygons of a GeoParquet/GeoJSON file (``by: region``),
the bundled Natural Earth countries (``by: country``, ``column`` name, iso_a3 or
continent; a centroid on a coast just outside the coarse polygons takes the nearest one
within 1 degree), or a band of latitude. Samples of the ``test`` and ``val`` regions form
those splits; the rest (or only the ``train`` regions, when listed) train, and
``id_fraction`` of them is kept aside as an in-distribution test, so that ``eofm test``
can report the gap between seen and unseen regions.

Polygons of a regions file may overlap: a centroid inside two differently named regions
could then train although it lies in a held-out one. That is refused, naming the regions
and the samples in both, unless ``overlap`` says what to do: ``first`` (the region listed
first in the file wins) or ``drop`` (such samples join no split). A centroid exactly on a
shared border is not an overlap: it takes the first region that touches it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eofm.errors import EofmError, RecipeError

BOUNDARIES = Path(__file__).parent / "boundaries" / "ne_110m_countries.geojson"
KINDS = ("region", "country", "continent", "latitude_band")
#: ``data.split.overlap``: what a sample inside two regions does (None: refused).
OVERLAP_CHOICES = ("first", "drop")
#: Degrees within which a coastal centroid outside every country takes the nearest one.
COAST_TOLERANCE = 1.0


@dataclass
class RegionSplit:
    by: str
    test: list[str]
    val: list[str] = field(default_factory=list)
    train: list[str] = field(default_factory=list)
    regions: str = ""
    column: str = ""
    width: float = 15.0
    id_fraction: float = 0.2
    overlap: str | None = None

    def names(self) -> list[str]:
        return [*self.test, *self.val, *self.train]


def parse_region_split(value: Mapping[str, Any] | None, where: str) -> RegionSplit | None:
    """The ``data.split`` mapping as a :class:`RegionSplit`, checked without any data."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RecipeError(f"data.split in {where} must be a mapping (by, test, ...).")
    known = set(RegionSplit.__dataclass_fields__)
    unknown = sorted(set(value) - known)
    if unknown:
        raise RecipeError(
            f"data.split in {where} has unknown key(s) {unknown}; use {sorted(known)}."
        )
    by = value.get("by")
    if by not in KINDS:
        raise RecipeError(f"data.split.by in {where} must be one of {list(KINDS)}, got {by!r}.")
    lists = {}
    for key in ("test", "val", "train"):
        items = value.get(key) or []
        if isinstance(items, str):
            items = [items]
        lists[key] = [str(v) for v in items]
    if not lists["test"]:
        raise RecipeError(f"data.split.test in {where} must name at least one region.")
    seen: dict[str, str] = {}
    for key, items in lists.items():
        for name in items:
            if name in seen:
                raise RecipeError(
                    f"data.split in {where} lists region {name!r} in both {seen[name]} and {key}."
                )
            seen[name] = key
    split = RegionSplit(by=by, **lists)
    if by == "region":
        split.regions = str(value.get("regions") or "")
        split.column = str(value.get("column") or "")
        if not split.regions or not split.column:
            raise RecipeError(
                f"data.split in {where}: by: region needs regions (a GeoParquet/GeoJSON "
                "file) and column (the attribute that names a region)."
            )
    elif by in ("country", "continent"):
        split.column = str(value.get("column") or ("continent" if by == "continent" else "name"))
    overlap = value.get("overlap")
    if overlap is not None and overlap not in OVERLAP_CHOICES:
        raise RecipeError(
            f"data.split.overlap in {where} must be one of {list(OVERLAP_CHOICES)} "
            f"(or left out to refuse overlapping regions), got {overlap!r}."
        )
    split.overlap = overlap
    split.width = float(value.get("width", split.width))
    split.id_fraction = float(value.get("id_fraction", split.id_fraction))
    if by == "latitude_band" and not 0 < split.width <= 90:
        raise RecipeError(f"data.split.width in {where} must be in (0, 90] degrees.")
    if not 0 <= split.id_fraction < 1:
        raise RecipeError(f"data.split.id_fraction in {where} must be in [0, 1).")
    return split


def latitude_band(lat: float, width: float) -> str:
    """``15N-30N``-style name of the band of ``width`` degrees holding ``lat``."""
    import math

    low = math.floor(lat / width) * width
    high = low + width

    def label(v: float) -> str:
        text = f"{abs(v):g}"
        return f"{text}{'N' if v > 0 else 'S' if v < 0 else ''}"

    return f"{label(low)}-{label(high)}"


def check_regions_file(split: RegionSplit, where: str) -> None:
    """The regions file of ``by: region``, from its metadata and attribute column only
    (light: no geometry is parsed into GeoPandas): it exists, holds regions, has the
    ``column`` and a CRS, and names every region the split lists.

    GeoParquet's CRS rule (geoparquet.org, spec v1.0 "crs"): a missing ``crs`` means
    OGC:CRS84, an explicit null an unknown CRS; GeoJSON (RFC 7946) is WGS 84 unless a
    2008-style ``crs`` member says otherwise. Other formats are checked when read.
    """
    if split.by != "region":
        return
    path = Path(split.regions)
    key = f"data.split.regions in {where}"
    if not path.is_file():
        raise RecipeError(f"Regions file {path} ({key}) does not exist.")
    if path.stat().st_size == 0:
        raise RecipeError(f"Regions file {path} ({key}) is empty (0 bytes).")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".geoparquet"):
            columns, has_crs, values = _parquet_regions(path, split.column)
        elif suffix in (".geojson", ".json"):
            columns, has_crs, values = _geojson_regions(path, split.column)
        else:
            return
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RecipeError(f"Cannot read the regions file {path} ({key}): {exc}") from None
    if not values and split.column in columns or not columns:
        raise RecipeError(f"Regions file {path} ({key}) holds no regions.")
    if split.column not in columns:
        raise RecipeError(
            f"Regions file {path} has no column '{split.column}' (data.split.column in "
            f"{where}); it has {sorted(columns)}."
        )
    if not has_crs:
        raise RecipeError(
            f"Regions file {path} ({key}) has no CRS; save it with one (e.g. EPSG:4326)."
        )
    names = {str(v) for v in values if v is not None}
    absent = [name for name in split.names() if name not in names]
    if absent:
        raise RecipeError(
            f"data.split region(s) {absent} in {where} are not in column '{split.column}' of "
            f"{path}, so their split would be left empty (it names {sorted(names)[:20]})."
        )


def _parquet_regions(path: Path, column: str) -> tuple[set[str], bool, list[Any]]:
    import json

    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    geo = json.loads((schema.metadata or {}).get(b"geo", b"{}"))
    primary = geo.get("primary_column", "geometry")
    columns = {name for name in schema.names if name != primary}
    has_crs = (
        bool(geo) and geo.get("columns", {}).get(primary, {}).get("crs", "OGC:CRS84") is not None
    )
    if pq.read_metadata(path).num_rows == 0 or column not in columns:
        return columns, has_crs, []
    return columns, has_crs, pq.read_table(path, columns=[column]).column(column).to_pylist()


def _geojson_regions(path: Path, column: str) -> tuple[set[str], bool, list[Any]]:
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    features = data.get("features") or [] if isinstance(data, dict) else []
    props = [f.get("properties") or {} for f in features if isinstance(f, dict)]
    columns = {k for p in props for k in p}
    has_crs = not isinstance(data.get("crs"), dict) or bool(data["crs"].get("properties"))
    return columns, has_crs, [p.get(column) for p in props if column in p]


def read_regions(path: Path, column: str) -> Any:
    """Polygons with a ``column`` that names them, in EPSG:4326 (clear errors)."""
    import geopandas as gpd

    path = Path(path)
    if not path.is_file():
        raise EofmError(f"Regions file {path} (data.split.regions) does not exist.")
    try:
        regions = (
            gpd.read_parquet(path)
            if path.suffix in (".parquet", ".geoparquet")
            else gpd.read_file(path)
        )
    except Exception as exc:
        raise EofmError(f"Cannot read the regions file {path}: {exc}") from None
    if column not in regions.columns:
        available = [c for c in regions.columns if c != regions.geometry.name]
        raise EofmError(
            f"Regions file {path} has no column '{column}' (data.split.column); it has {available}."
        )
    if regions.crs is None:
        raise EofmError(f"Regions file {path} has no CRS; save it with one (e.g. EPSG:4326).")
    return regions[[column, regions.geometry.name]].to_crs("EPSG:4326")


def assign_regions(
    points: Mapping[str, tuple[float, float]], split: RegionSplit
) -> dict[str, str | None]:
    """The region of each sample, from its centroid ``(lat, lon)`` (None: in no region)."""
    if split.by == "latitude_band":
        return {k: latitude_band(lat, split.width) for k, (lat, _) in points.items()}
    import warnings

    import geopandas as gpd

    path = Path(split.regions) if split.by == "region" else BOUNDARIES
    regions = read_regions(path, split.column)
    keys = list(points)
    located = gpd.GeoDataFrame(
        {"key": keys},
        geometry=gpd.points_from_xy([points[k][1] for k in keys], [points[k][0] for k in keys]),
        crs="EPSG:4326",
    )
    # a centroid on a border belongs to the first region that touches it
    inside = gpd.sjoin(located, regions, how="left", predicate="intersects")
    inside = inside[~inside.index.duplicated(keep="first")]
    found = dict(zip(inside["key"], inside[split.column], strict=True))
    overlapping = _overlaps(located, regions, split, path)
    if split.overlap == "drop":
        found = {k: v for k, v in found.items() if k not in overlapping}
        keys = [k for k in keys if k not in overlapping]
        located = located[~located["key"].isin(list(overlapping))]
    if split.by != "region":  # coarse coasts: the nearest country within the tolerance
        missing = located[[found.get(k) is None or found[k] != found[k] for k in keys]]
        if len(missing):
            with warnings.catch_warnings():  # distances in degrees: a coarse tolerance
                warnings.simplefilter("ignore", UserWarning)
                near = gpd.sjoin_nearest(missing, regions, how="left", max_distance=COAST_TOLERANCE)
            near = near[~near.index.duplicated(keep="first")]
            found.update(dict(zip(near["key"], near[split.column], strict=True)))
    return {k: (str(v) if isinstance(v, str) or v == v else None) for k, v in found.items()}


def _overlaps(located: Any, regions: Any, split: RegionSplit, path: Path) -> dict[str, list[str]]:
    """The samples inside (not on the border of) two or more differently named regions,
    with those regions; refused unless ``split.overlap`` says what to do with them."""
    import geopandas as gpd

    within = gpd.sjoin(located, regions, how="inner", predicate="within")
    names: dict[str, list[str]] = {}
    for key, name in zip(within["key"], within[split.column], strict=True):
        held = names.setdefault(key, [])
        if str(name) not in held:
            held.append(str(name))
    overlapping = {k: v for k, v in names.items() if len(v) > 1}
    if overlapping and split.overlap is None:
        pairs: dict[tuple[str, ...], list[str]] = {}
        for key in sorted(overlapping):
            pairs.setdefault(tuple(overlapping[key]), []).append(key)
        lines = "; ".join(
            f"{' and '.join(repr(n) for n in regs)}: {', '.join(keys[:5])}"
            + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            for regs, keys in pairs.items()
        )
        raise EofmError(
            f"Regions of {path} overlap: {len(overlapping)} sample(s) lie inside more than one "
            f"(regions: samples) {lines}. Fix the polygons, or set data.split.overlap: first "
            "(the region listed first wins) or drop (those samples join no split)."
        )
    return overlapping


def split_by_region(
    regions: Mapping[str, str | None], split: RegionSplit, where: str
) -> dict[str, list[str]]:
    """train / val / test / id_test sample keys from their regions (errors name regions)."""
    present = sorted({r for r in regions.values() if r is not None})
    absent = [name for name in split.names() if name not in present]
    if absent:
        raise EofmError(
            f"data.split region(s) {absent} match no sample of {where} (its samples lie in "
            f"{present or 'no region'})."
        )
    out: dict[str, list[str]] = {"train": [], "val": [], "test": [], "id_test": []}
    for key in sorted(regions):
        region = regions[key]
        if region in split.test:
            out["test"].append(key)
        elif region in split.val:
            out["val"].append(key)
        elif not split.train or region in split.train:
            out["train"].append(key)
    if not split.val:  # validate in the training regions: a share of their samples
        out["val"], out["train"] = _share(out["train"], 0.2, "val")
    if split.id_fraction > 0:
        out["id_test"], out["train"] = _share(out["train"], split.id_fraction, "id")
    for name in ("train", "val", "test"):
        if not out[name]:
            raise EofmError(
                f"data.split leaves the {name} split of {where} empty (regions present: {present})."
            )
    return out


def _share(keys: Sequence[str], fraction: float, salt: str) -> tuple[list[str], list[str]]:
    """A deterministic ``fraction`` of ``keys`` (by hash) and the rest; the rest keeps one."""
    ranked = sorted(keys, key=lambda k: hashlib.sha1(f"{salt}:{k}".encode()).hexdigest())
    count = min(int(round(fraction * len(ranked))), max(0, len(ranked) - 1))
    return sorted(ranked[:count]), sorted(ranked[count:])

"""Multi-file products as ``eofm predict`` inputs: one GDAL VRT stacks their band files.

A Sentinel-2 product stores each band in its own file, at its own resolution. This
module turns such an input into a VRT (an XML file GDAL reads as one raster): the
band files are found and named (``eofm.bands.canonical_band``), and each becomes a
band of one grid, described by its eofm name, so ``eofm predict`` selects the model's
bands by name and reads only their windows (nothing is read whole; bands the model
does not use are never read). The grid keeps the product's CRS and extent at
``--resolution`` metres (default ``DEFAULT_RESOLUTION_M``); coarser bands are resampled
bilinearly by GDAL as windows are read.

Accepted inputs:

- a ``.SAFE`` folder (L1C or L2A), with one granule: ESA, *Sentinel-2 Products
  Specification Document* (S2-PDGS-TAS-DI-PSD), "Level-1C/Level-2A product physical
  format": ``GRANULE/<granule>/IMG_DATA/T<tile>_<datatake>_B02.jp2`` (L1C) and
  ``GRANULE/<granule>/IMG_DATA/R10m|R20m|R60m/T<tile>_<datatake>_B02_10m.jp2`` (L2A;
  the same layout is shown by GDAL's SENTINEL2 driver documentation). Where L2A holds a
  band at several resolutions, the finest one not finer than the grid is used (else
  the finest);
- a ``GRANULE/*/IMG_DATA`` folder, or any folder of per-band JP2 or GeoTIFF files
  named ``..._B02.jp2``, ``..._B8A_20m.tif``, HLS ``....B02.tif``: every raster in it
  must carry a distinct band code, otherwise the folder is a folder of scenes;
- band files given one by one (or by a glob), grouped by their name before the code;
- a local STAC item (``*.json``, ``"type": "Feature"``) whose assets point at band files
  (STAC spec, Item ``assets`` with ``href``; band names from the asset key, the eo
  extension's ``eo:bands[].name``/``common_name`` or STAC 1.1 ``bands``). Relative
  hrefs are resolved against the item's folder; remote hrefs are refused.

The no-data value is the band files' own, else 0 for ``.SAFE`` products (ESA's NODATA
special value of L1C and L2A reflectances). Products of processing baseline 04.00 and
later store reflectance x10000 plus 1000: their ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``
give ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` per ``band_id`` (0..12 = B01..B12 with B8A
at 8), which the VRT adds back (``ScaleOffset``; the bands become Int32), so such a
product has the values of older ones and of the training chips.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from eofm.data.vrt_files import GDAL_TYPES, Band, Source, vrt_document, write_scratch_vrt
from eofm.errors import EofmError

#: The grid of a product when ``--resolution`` is not given: Sentinel-2's finest bands
#: (B02, B03, B04, B08) are 10 m.
DEFAULT_RESOLUTION_M = 10.0
#: Band files: a band code at the end of the name, after ``_`` or ``.``, then an optional
#: L2A resolution suffix (``_10m``).
BAND_FILE = re.compile(r"^(?P<prefix>.+?)[_.](?P<code>B\d{1,2}A?)(?:_(?P<res>\d+)m)?$", re.I)
RASTER_SUFFIXES = (".jp2", ".tif", ".tiff")
#: ESA's no-data value of L1C/L2A reflectance band files.
SAFE_NODATA = 0.0


@dataclass(frozen=True)
class BandFile:
    name: str  # eofm band name
    path: Path


def band_file(path: Path) -> BandFile | None:
    """The eofm band a file named like ``T31UFU_20240215T103021_B8A_20m.jp2`` holds."""
    from eofm.bands import canonical_band

    if path.suffix.lower() not in RASTER_SUFFIXES:
        return None
    match = BAND_FILE.match(path.name[: -len(path.suffix)])
    if not match:
        return None
    # HLS L30 (Landsat) codes differ from S2's: HLS.L30.<tile>.<time>.v2.0.B05.tif is NIR
    sensor = "L30." if ".L30." in f".{match.group('prefix').upper()}." else ""
    name = canonical_band(sensor + match.group("code"))
    return BandFile(name, path) if name else None


def is_product(path: Path) -> bool:
    """Whether ``path`` is an input this module reads (see the module docstring)."""
    if path.is_dir():
        return path.suffix.upper() == ".SAFE" or len(_band_folder(path)) >= 2
    return path.is_file() and path.suffix.lower() == ".json"


def product_vrt(path: Path, resolution_m: float | None) -> Path:
    """The VRT of the product at ``path`` (a file in a temporary folder removed at exit)."""
    if path.is_dir() and path.suffix.upper() == ".SAFE":
        stem = path.name[: -len(path.suffix)]
        bands = _safe_bands(path)
        return stack_bands(bands, stem, resolution_m, path, SAFE_NODATA, safe_offsets(path))
    if path.is_dir():
        return stack_bands(_band_folder(path), _stem_of_folder(path), resolution_m, path)
    bands, stem = _stac_bands(path)
    return stack_bands(bands, stem, resolution_m, path)


def group_band_files(files: Sequence[Path], resolution_m: float | None) -> list[Path]:
    """``files`` with the band files of one product (same folder and name prefix, at
    least two distinct bands) replaced by their VRT."""
    groups: dict[tuple[Path, str], list[BandFile]] = {}
    for file in files:
        band = band_file(file)
        match = BAND_FILE.match(file.name[: -len(file.suffix)]) if band else None
        if band and match:
            groups.setdefault((file.parent, match.group("prefix")), []).append(band)
    out, grouped = [], set()
    for (_, prefix), bands in groups.items():
        if len({b.name for b in bands}) >= 2:
            out.append(stack_bands(bands, prefix, resolution_m, bands[0].path))
            grouped |= {b.path for b in bands}
    return [f for f in files if f not in grouped] + out


def _band_folder(folder: Path) -> list[BandFile]:
    """The band files of a folder of per-band files; [] when it is not one."""
    rasters = [
        p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES
    ]
    if not rasters:
        subfolders = [folder / r for r in ("R10m", "R20m", "R60m") if (folder / r).is_dir()]
        rasters = [p for sub in subfolders for p in sorted(sub.iterdir()) if p.is_file()]
        rasters = [p for p in rasters if p.suffix.lower() in RASTER_SUFFIXES]
        bands = [b for b in map(band_file, rasters) if b]  # L2A: TCI, AOT, SCL... are not bands
        return bands
    bands = [band_file(p) for p in rasters]
    if not all(bands) or len({b.name for b in bands if b}) != len(bands):
        return []
    return [b for b in bands if b]


def _safe_bands(safe: Path) -> list[BandFile]:
    granules = sorted(p for p in (safe / "GRANULE").glob("*") if (p / "IMG_DATA").is_dir())
    if len(granules) != 1:
        found = [g.name for g in granules] or "none"
        raise EofmError(
            f"{safe} holds {len(granules) or 'no'} granule(s) with IMG_DATA ({found}); "
            "give one GRANULE/<granule>/IMG_DATA folder as the input."
        )
    bands = _band_folder(granules[0] / "IMG_DATA")
    if not bands:
        raise EofmError(
            f"{granules[0] / 'IMG_DATA'} holds no band file (*_B02.jp2, R10m/*_B02_10m.jp2)."
        )
    return bands


def safe_offsets(safe: Path) -> dict[str, float]:
    """eofm band name -> the ``RADIO_ADD_OFFSET`` (L1C) or ``BOA_ADD_OFFSET`` (L2A) of a
    ``.SAFE``'s product metadata (none before processing baseline 04.00)."""
    from eofm.bands import SENTINEL2_L1C_BANDS

    offsets: dict[str, float] = {}
    for mtd in sorted(safe.glob("MTD_MSIL*.xml")):
        text = mtd.read_text(errors="replace")
        pattern = r'<(?:BOA|RADIO)_ADD_OFFSET\s+band_id="(\d+)"\s*>\s*(-?[\d.]+)\s*<'
        for band_id, value in re.findall(pattern, text):
            if int(band_id) < len(SENTINEL2_L1C_BANDS):
                offsets[SENTINEL2_L1C_BANDS[int(band_id)]] = float(value)
    return offsets


def _stem_of_folder(folder: Path) -> str:
    """A per-band folder's output stem: its product or granule name, not ``IMG_DATA``."""
    for part in [folder, *folder.parents]:
        if part.suffix.upper() == ".SAFE":
            return part.name[: -len(part.suffix)]
    if folder.name == "IMG_DATA" and folder.parent.parent.name == "GRANULE":
        return folder.parent.name
    return folder.name


def _stac_bands(item_path: Path) -> tuple[list[BandFile], str]:
    from eofm.bands import canonical_band

    try:
        item = json.loads(item_path.read_text())
    except (OSError, ValueError) as exc:
        raise EofmError(f"Cannot read the STAC item {item_path}: {exc}") from None
    if not isinstance(item, dict) or item.get("type") != "Feature" or "assets" not in item:
        raise EofmError(f"{item_path} is not a STAC item (a GeoJSON Feature with assets).")
    bands: list[BandFile] = []
    for key, asset in item["assets"].items():
        described = (asset.get("eo:bands") or asset.get("bands") or [{}])[0]
        candidates = [key, described.get("name"), described.get("common_name")]
        name = next((n for c in candidates if c and (n := canonical_band(str(c)))), None)
        if name is None or name in {b.name for b in bands}:
            continue
        href = str(asset.get("href", ""))
        url = urlparse(href)
        if url.scheme not in ("", "file"):
            raise EofmError(
                f"{item_path}: asset {key!r} is remote ({href}); download the band files and "
                "point the item at them (eofm reads local STAC items only)."
            )
        path = Path(unquote(url.path) if url.scheme else href)
        path = path if path.is_absolute() else item_path.parent / path
        if not path.is_file():
            raise EofmError(f"{item_path}: asset {key!r} points at {path}, which does not exist.")
        bands.append(BandFile(name, path))
    if not bands:
        raise EofmError(
            f"{item_path}: no asset is a known band (keys or eo:bands names like B02, blue)."
        )
    return bands, str(item.get("id") or item_path.stem)


def stack_bands(
    bands: Sequence[BandFile],
    stem: str,
    resolution_m: float | None,
    where: Path,
    default_nodata: float | None = None,
    offsets: dict[str, float] | None = None,
) -> Path:
    """Write ``<tmp>/<stem>.vrt``: ``bands`` on one grid of ``resolution_m`` metres in
    the CRS and extent of the finest band (GDAL VRT format, ``ComplexSource`` with
    bilinear resampling); band descriptions are the eofm band names."""
    import rasterio

    resolution = float(resolution_m or DEFAULT_RESOLUTION_M)
    infos = []
    for band in bands:
        try:
            with rasterio.open(band.path) as ds:
                infos.append(
                    (band, ds.crs, ds.bounds, ds.res, ds.width, ds.height, ds.dtypes[0], ds.nodata)
                )
        except Exception as exc:
            raise EofmError(
                f"Cannot read band {band.name} of {where}: {band.path}: {exc}"
            ) from None
    crs = infos[0][1]
    if crs is None or any(i[1] != crs for i in infos):
        raise EofmError(
            f"The band files of {where} are not all in one CRS ({sorted({str(i[1]) for i in infos})})."
        )
    if crs.is_geographic:
        raise EofmError(
            f"{where}: --resolution is in metres and the bands' CRS {crs} is geographic."
        )
    chosen: dict[str, tuple] = {}
    for info in sorted(infos, key=lambda i: _preference(i[3][0], resolution)):
        chosen.setdefault(info[0].name, info)
    left, bottom, right, top = min((i for i in chosen.values()), key=lambda i: i[3][0])[2]
    width, height = round((right - left) / resolution), round((top - bottom) / resolution)
    if width < 1 or height < 1:
        raise EofmError(f"--resolution {resolution} m is coarser than {where} is wide.")
    dtypes = {i[6] for i in chosen.values()}
    dtype = dtypes.pop() if len(dtypes) == 1 else "Float32"
    offsets = {k: v for k, v in (offsets or {}).items() if v and k in chosen}
    if offsets and dtype != "Float32":
        dtype = "Int32"  # uint16 + a negative offset: integers still, without wrapping
    vrt_bands = []
    for band, _, bounds, res, w, h, _, nodata in chosen.values():
        nodata = nodata if nodata is not None else default_nodata
        x, y = (bounds.left - left) / resolution, (top - bounds.top) / resolution
        dst = [float(f"{v:.10g}") for v in (x, y, w * res[0] / resolution, h * res[1] / resolution)]
        source = Source(
            band.path.absolute(),
            src_rect=(0, 0, w, h),
            dst_rect=(dst[0], dst[1], dst[2], dst[3]),
            nodata=nodata,
            resampling="bilinear",
            scale_offset=offsets.get(band.name),
            complex=True,
        )
        vrt_bands.append(Band(GDAL_TYPES.get(dtype, dtype), [source], band.name, nodata))
    geotransform = (left, resolution, 0.0, top, 0.0, -resolution)
    document = vrt_document((width, height), crs.to_wkt(), geotransform, vrt_bands)
    return write_scratch_vrt(stem, document)


def _preference(res: float, grid: float) -> tuple[int, float]:
    """Sort key of a band file's resolution: not finer than the grid first, then closest."""
    return (0 if res >= grid - 1e-6 else 1, abs(math.log(res / grid)))

"""Band names shared by datasets and backbones.

Bands are referred to by name everywhere. A dataset declares the bands its files hold
(in file order); a backbone manifest declares the bands it was pretrained on. The
pipeline maps one onto the other by name.
"""

from __future__ import annotations

from collections.abc import Sequence

from eofm.errors import EofmError

#: Canonical band names, with a one-line meaning for ``eofm`` listings and errors.
BAND_NAMES: dict[str, str] = {
    "COASTAL_AEROSOL": "coastal aerosol (S2 B1, ~443 nm)",
    "BLUE": "blue (S2 B2, HLS B02, ~490 nm)",
    "GREEN": "green (S2 B3, HLS B03, ~560 nm)",
    "RED": "red (S2 B4, HLS B04, ~665 nm)",
    "RED_EDGE_1": "red edge 1 (S2 B5, ~705 nm)",
    "RED_EDGE_2": "red edge 2 (S2 B6, ~740 nm)",
    "RED_EDGE_3": "red edge 3 (S2 B7, ~783 nm)",
    "NIR_BROAD": "broad NIR (S2 B8, ~842 nm)",
    "NIR_NARROW": "narrow NIR (S2 B8A, HLS B05, ~865 nm)",
    "WATER_VAPOR": "water vapour (S2 B9, ~945 nm)",
    "CIRRUS": "cirrus (S2 B10, ~1375 nm)",
    "SWIR_1": "shortwave IR 1 (S2 B11, HLS B06, ~1610 nm)",
    "SWIR_2": "shortwave IR 2 (S2 B12, HLS B07, ~2190 nm)",
    "VV": "Sentinel-1 C-band backscatter, VV polarisation (dB)",
    "VH": "Sentinel-1 C-band backscatter, VH polarisation (dB)",
    "DEM": "terrain elevation (m), e.g. Copernicus DEM GLO-30 (TerraMind's DEM modality)",
}

#: Central wavelengths (µm) of the optical bands, for wavelength-conditioned encoders (DOFA):
#: Sentinel-2A MSI spectral response (ESA, "Sentinel-2 User Handbook", 2015, Table 1).
BAND_WAVELENGTH_UM: dict[str, float] = {
    "COASTAL_AEROSOL": 0.443,
    "BLUE": 0.490,
    "GREEN": 0.560,
    "RED": 0.665,
    "RED_EDGE_1": 0.705,
    "RED_EDGE_2": 0.740,
    "RED_EDGE_3": 0.783,
    "NIR_BROAD": 0.842,
    "NIR_NARROW": 0.865,
    "WATER_VAPOR": 0.945,
    "CIRRUS": 1.375,
    "SWIR_1": 1.610,
    "SWIR_2": 2.190,
}

#: Bandwidths (µm) of the same optical bands, for encoders conditioned on wavelength and
#: bandwidth (Copernicus-FM): Sentinel-2A MSI, same source ("Sentinel-2 User Handbook",
#: 2015, Table 1); Copernicus-FM's own Sentinel-2 configs use these values too
#: (zhu-xlab/Copernicus-FM, Copernicus-Bench/src/configs/dataset/cobench_eurosat_s2.yaml).
BAND_BANDWIDTH_UM: dict[str, float] = {
    "COASTAL_AEROSOL": 0.020,
    "BLUE": 0.065,
    "GREEN": 0.035,
    "RED": 0.030,
    "RED_EDGE_1": 0.015,
    "RED_EDGE_2": 0.015,
    "RED_EDGE_3": 0.020,
    "NIR_BROAD": 0.115,
    "NIR_NARROW": 0.020,
    "WATER_VAPOR": 0.020,
    "CIRRUS": 0.030,
    "SWIR_1": 0.090,
    "SWIR_2": 0.180,
}

#: The 13 Sentinel-2 L1C bands in the order Sen1Floods11 ``S2Hand`` chips store them.
SENTINEL2_L1C_BANDS: tuple[str, ...] = (
    "COASTAL_AEROSOL",
    "BLUE",
    "GREEN",
    "RED",
    "RED_EDGE_1",
    "RED_EDGE_2",
    "RED_EDGE_3",
    "NIR_BROAD",
    "NIR_NARROW",
    "WATER_VAPOR",
    "CIRRUS",
    "SWIR_1",
    "SWIR_2",
)
#: The 12 of them without CIRRUS (B10): the optical input of TerraMind's S2L2A embedding and
#: of CROMA, in the same order.
SENTINEL2_BANDS_WITHOUT_CIRRUS: tuple[str, ...] = tuple(
    b for b in SENTINEL2_L1C_BANDS if b != "CIRRUS"
)

#: Sentinel-1 GRD bands in the order Sen1Floods11 ``S1Hand`` chips store them.
SENTINEL1_BANDS: tuple[str, ...] = ("VV", "VH")

#: The six HLS bands Prithvi-EO was pretrained on (HLS B02, B03, B04, B05, B06, B07).
HLS_PRITHVI_BANDS: tuple[str, ...] = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")


#: Sentinel-2 band codes (ESA's MSI names; HLS S30 files use the same codes) -> band names.
#: Source: ESA Sentinel-2 MSI User Guide, "Spectral resolution"; HLS v2.0 User Guide
#: (Masek et al., NASA LP DAAC), Table 6 (S30 bands B01 .. B12, B8A).
SENTINEL2_CODES: dict[str, str] = {
    "B1": "COASTAL_AEROSOL",
    "B2": "BLUE",
    "B3": "GREEN",
    "B4": "RED",
    "B5": "RED_EDGE_1",
    "B6": "RED_EDGE_2",
    "B7": "RED_EDGE_3",
    "B8": "NIR_BROAD",
    "B8A": "NIR_NARROW",
    "B9": "WATER_VAPOR",
    "B10": "CIRRUS",
    "B11": "SWIR_1",
    "B12": "SWIR_2",
}

#: HLS L30 (Landsat 8/9 OLI) band codes, written ``L30.B05`` (or ``L30_B05``): they differ
#: from S2's (L30 B05 is narrow NIR, S30 B05 red edge 1). HLS v2.0 User Guide, Table 5.
HLS_L30_CODES: dict[str, str] = {
    "B1": "COASTAL_AEROSOL",
    "B2": "BLUE",
    "B3": "GREEN",
    "B4": "RED",
    "B5": "NIR_NARROW",
    "B6": "SWIR_1",
    "B7": "SWIR_2",
    "B9": "CIRRUS",
}

#: Other spellings: STAC ``eo:common_name`` values (STAC eo extension, "Common Band Names")
#: as Sentinel-2 and HLS STAC items use them, and the HLS Burn Scars dataset card's names.
COMMON_NAMES: dict[str, str] = {
    "COASTAL": "COASTAL_AEROSOL",
    "REDEDGE1": "RED_EDGE_1",
    "REDEDGE2": "RED_EDGE_2",
    "REDEDGE3": "RED_EDGE_3",
    "NIR": "NIR_BROAD",
    "NIR08": "NIR_NARROW",
    "NIR09": "WATER_VAPOR",
    "SWIR16": "SWIR_1",
    "SWIR22": "SWIR_2",
    "SWIR1": "SWIR_1",
    "SWIR2": "SWIR_2",
}


def canonical_band(name: str) -> str | None:
    """eofm's name for band ``name``, or None when it is not a known name or alias.

    Accepted: eofm's names in any case, with spaces or hyphens for underscores
    (``NIR narrow``); Sentinel-2 / HLS S30 codes with or without the leading zero (``B1``,
    ``B01``, ``B8A``, ``S30.B8A``); HLS L30 codes with their prefix (``L30.B05``); STAC
    common names (``nir08``, ``swir16``).
    """
    import re

    key = re.sub(r"[\s\-]+", "_", str(name).strip()).upper()
    if key in BAND_NAMES:
        return key
    if key in COMMON_NAMES:
        return COMMON_NAMES[key]
    match = re.fullmatch(r"(?:(S30|L30|S2)[._:])?B0?(\d{1,2}A?)", key)
    if not match:
        return None
    table = HLS_L30_CODES if match.group(1) == "L30" else SENTINEL2_CODES
    return table.get(f"B{match.group(2)}")


def band_codes(name: str) -> str:
    """``name`` with its Sentinel-2 code, for listings and errors: ``NIR_NARROW (B8A)``."""
    code = next((c for c, n in SENTINEL2_CODES.items() if n == name), None)
    return f"{name} ({code})" if code else name


def check_band_names(bands: Sequence[str], *, where: str) -> list[str]:
    """Return ``bands`` as eofm's names (aliases resolved, see :func:`canonical_band`), or
    raise naming the first unknown band, ``where``, and the names that are accepted."""
    from difflib import get_close_matches

    out = []
    for band in bands:
        name = canonical_band(band)
        if name is None:
            close = get_close_matches(str(band).upper(), BAND_NAMES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise EofmError(
                f"Unknown band {band!r} in {where}.{hint} Known bands: "
                f"{', '.join(band_codes(n) for n in BAND_NAMES)}; Sentinel-2 / HLS S30 codes "
                "B1 (or B01) .. B12 and B8A, HLS L30 codes as L30.B01 .. L30.B09, and STAC "
                "common names (blue, nir08, swir16, ...) are accepted too."
            )
        out.append(name)
    if len(set(out)) != len(out):
        raise EofmError(f"Duplicate band names in {where}: {list(bands)}")
    return out


def band_indices(wanted: Sequence[str], available: Sequence[str], *, where: str) -> list[int]:
    """Indices of ``wanted`` bands inside ``available``; error names the missing band."""
    index = {name: i for i, name in enumerate(available)}
    missing = [b for b in wanted if b not in index]
    if missing:
        raise EofmError(
            f"Band {missing[0]!r} is not available in {where}, which holds {list(available)}."
        )
    return [index[b] for b in wanted]


#: Joins a band and its frame in the input names of multi-date stacks: ``RED@early``.
FRAME_SEPARATOR = "@"


def stack_band_names(bands: Sequence[str], frames: Sequence[str]) -> list[str]:
    """The bands of a frame-major stack of ``frames``, each named ``BAND@frame``."""
    return [f"{band}{FRAME_SEPARATOR}{frame}" for frame in frames for band in bands]


def frame_bands(names: Sequence[str]) -> list[str]:
    """The bands of one frame of a stack named by :func:`stack_band_names` (plain band
    names are returned as they are)."""
    return list(dict.fromkeys(str(n).split(FRAME_SEPARATOR)[0] for n in names))

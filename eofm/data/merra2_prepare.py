"""Raw MERRA-2 collections -> Prithvi WxC's input layout (``eofm prepare merra2``).

Users download MERRA-2 from NASA GES DISC as one file per collection and day
(``MERRA2_400.inst1_2d_asm_Nx.20200101.nc4``, ...); Prithvi WxC reads daily files
``MERRA2_sfc_YYYYMMDD.nc`` (3-hourly surface variables and the static fields) and
``MERRA_pres_YYYYMMDD.nc`` (3-hourly variables on 14 model levels), with ``time`` in
minutes from ``begin_date``/``begin_time`` (``PrithviWxC.dataloaders.merra2.Merra2Dataset``).

The route is NASA-IMPACT/Prithvi-WxC's own ``data_preparation/prepare_data.py`` and
``aggregation.py``:

* instantaneous collections (``inst1_2d_asm_Nx``, ``inst3_3d_asm_Nv``) are taken at
  00, 03, ..., 21 UTC; the model levels are those of the release's ``config.yaml``
  (72, 71, 68, 63, 56, 53, 51, 48, 45, 44, 43, 41, 39, 34);
* hourly means (``tavg1_2d_lnd_Nx``, ``tavg1_2d_flx_Nx``, ``tavg1_2d_rad_Nx``, stamped at
  HH:30) are averaged over the hours stamped within 30 minutes of each 3-hourly time (the
  previous day's 23:30 joins 00 UTC when its file is there); ``GWETROOT`` is 1 and ``LAI``
  0 where they are undefined (over water), as there;
* the constants come from ``const_2d_asm_Nx`` (``PHIS``, ``FRLAND``) and the monthly
  ``const_2d_ctm_Nx`` (``FROCEAN``, ``FRACI``, the day's month).

Collection names and variables: Bosilovich et al., "MERRA-2: File Specification", GMAO
Office Note No. 9 (2016). Nothing is overwritten: outputs that exist are an error before
anything is written, and each file is written under a temporary name, then renamed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eofm.atomic import atomic_path
from eofm.errors import EofmError

log = logging.getLogger(__name__)

#: collection -> (how its times are taken, variables).
COLLECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "inst1_2d_asm_Nx": (
        "instant",
        ("U10M", "V10M", "T2M", "QV2M", "SLP", "PS", "TS", "TQI", "TQL", "TQV"),
    ),
    "tavg1_2d_lnd_Nx": ("hourly_mean", ("GWETROOT", "LAI")),
    "tavg1_2d_flx_Nx": ("hourly_mean", ("EFLUX", "HFLUX", "Z0M")),
    "tavg1_2d_rad_Nx": ("hourly_mean", ("LWGEM", "LWGAB", "LWTUP", "SWGNT", "SWTNT")),
    "inst3_3d_asm_Nv": ("levels", ("U", "V", "T", "QV", "OMEGA", "PL", "H", "CLOUD", "QI", "QL")),
}
#: The constant collections (one file each, date ``00000000``).
CONSTANTS: dict[str, tuple[str, ...]] = {
    "const_2d_asm_Nx": ("PHIS", "FRLAND"),
    "const_2d_ctm_Nx": ("FROCEAN", "FRACI"),  # 12 monthly fields
}
#: Fill values for hourly means undefined over water (prepare_data.py).
FILL = {"GWETROOT": 1.0, "LAI": 0.0}
#: The model levels of the Prithvi WxC release (``config.yaml``).
LEVELS = (72, 71, 68, 63, 56, 53, 51, 48, 45, 44, 43, 41, 39, 34)
#: GES DISC short names, for the guidance in errors.
SHORT_NAMES = {
    "inst1_2d_asm_Nx": "M2I1NXASM",
    "tavg1_2d_lnd_Nx": "M2T1NXLND",
    "tavg1_2d_flx_Nx": "M2T1NXFLX",
    "tavg1_2d_rad_Nx": "M2T1NXRAD",
    "inst3_3d_asm_Nv": "M2I3NVASM",
    "const_2d_asm_Nx": "M2C0NXASM",
    "const_2d_ctm_Nx": "M2C0NXCTM",
}
_RAW = re.compile(r"MERRA2_\d{3}\.(\w+?)\.(\d{8})\.(?:SUB\.)?nc4?$")


def raw_files(raw_dir: Path) -> dict[tuple[str, str], Path]:
    """``(collection, YYYYMMDD) -> file`` of the raw MERRA-2 files under ``raw_dir``."""
    found = {}
    for path in sorted(raw_dir.rglob("MERRA2_*.nc*")):
        match = _RAW.search(path.name)
        if match:
            found[(match.group(1), match.group(2))] = path
    return found


def _guidance(missing: Sequence[str]) -> str:
    return ", ".join(f"{c} ({SHORT_NAMES[c]})" for c in missing)


def plan(raw_dir: Path, out_dir: Path) -> list[str]:
    """The days to prepare; every check that needs no reading (collections present for
    each day, outputs not there yet) is done here, before anything is written."""
    if not raw_dir.is_dir():
        raise EofmError(f"{raw_dir} is not a folder of raw MERRA-2 files.", exit_code=2)
    files = raw_files(raw_dir)
    days = sorted({d for (c, d) in files if c == "inst1_2d_asm_Nx"})
    if not days:
        raise EofmError(
            f"{raw_dir} holds no MERRA2_*.inst1_2d_asm_Nx.YYYYMMDD.nc4 file. Download the "
            f"collections {_guidance([*COLLECTIONS, *CONSTANTS])} from NASA GES DISC "
            "(https://disc.gsfc.nasa.gov) for the days you need.",
            exit_code=2,
        )
    missing_constants = [c for c in CONSTANTS if (c, "00000000") not in files]
    if missing_constants:
        raise EofmError(
            f"{raw_dir} lacks the constant file(s) MERRA2_101.<collection>.00000000.nc4 of "
            f"{_guidance(missing_constants)}; Prithvi WxC needs their PHIS, FRLAND, FROCEAN "
            "and FRACI.",
            exit_code=2,
        )
    for day in days:
        missing = [c for c in COLLECTIONS if (c, day) not in files]
        if missing:
            raise EofmError(
                f"{raw_dir} has no {day} file of collection(s) {_guidance(missing)}; Prithvi "
                "WxC's input needs every one of them for each day.",
                exit_code=2,
            )
    existing = [
        out_dir / f"{prefix}_{day}.nc"
        for day in days
        for prefix in ("MERRA2_sfc", "MERRA_pres")
        if (out_dir / f"{prefix}_{day}.nc").exists()
    ]
    if existing:
        raise EofmError(
            f"{existing[0]} exists ({len(existing)} output file(s) would be overwritten); "
            "choose another --out or move them away.",
            exit_code=2,
        )
    return days


def _open(path: Path, names: Sequence[str]) -> Any:
    import xarray as xr

    try:
        ds = xr.open_dataset(path)
    except Exception as exc:
        raise EofmError(f"Cannot open {path} as NetCDF: {exc}") from None
    absent = [n for n in names if n not in ds.data_vars]
    if absent:
        raise EofmError(f"{path} lacks variable(s) {absent} (it holds {sorted(ds.data_vars)}).")
    return ds[list(names)]


def _three_hourly(day: str) -> np.ndarray:
    start = np.datetime64(f"{day[:4]}-{day[4:6]}-{day[6:]}T00:00", "m")
    return start + np.arange(8) * np.timedelta64(180, "m")


def _hourly_means(ds: Any, before: Any | None, times: np.ndarray) -> Any:
    """Means of the hours stamped within 30 min of each of ``times`` (aggregation.py)."""
    import xarray as xr

    if before is not None:
        ds = xr.concat([before.isel(time=[-1]), ds], dim="time")
    stamps = ds["time"].values.astype("datetime64[m]")
    parts = []
    for t in times:
        near = np.abs((stamps - t).astype(np.int64)) <= 30
        if not near.any():
            raise EofmError(f"No hourly mean within 30 min of {t} in {ds.encoding.get('source')}.")
        parts.append(ds.isel(time=np.flatnonzero(near)).mean("time"))
    out = xr.concat(parts, dim="time").assign_coords(time=times)
    return out.fillna({n: v for n, v in FILL.items() if n in out.data_vars})


def _minutes(ds: Any, day: str) -> Any:
    """``time`` as MERRA-2 stores it: minutes after ``begin_date``/``begin_time``."""
    minutes = np.arange(ds.sizes["time"], dtype=np.int32) * 180
    ds = ds.assign_coords(time=minutes)
    ds["time"].attrs = {
        "units": f"minutes since {day[:4]}-{day[4:6]}-{day[6:]} 00:00:00",
        "begin_date": np.int32(int(day)),
        "begin_time": np.int32(0),
        "time_increment": np.int32(30000),
    }
    return ds


def _write(ds: Any, path: Path) -> None:
    encoding = {n: {"zlib": True, "complevel": 4} for n in ds.data_vars}
    with atomic_path(path) as partial:
        ds.to_netcdf(partial, format="NETCDF4", encoding=encoding)


def prepare_day(files: dict[tuple[str, str], Path], day: str, out_dir: Path) -> list[Path]:
    """Write ``MERRA2_sfc_<day>.nc`` and ``MERRA_pres_<day>.nc`` from the raw files."""
    import xarray as xr

    times = _three_hourly(day)
    previous = str(
        (np.datetime64(f"{day[:4]}-{day[4:6]}-{day[6:]}", "D") - 1)
        .astype(object)
        .strftime("%Y%m%d")
    )
    surface = []
    for collection, (kind, names) in COLLECTIONS.items():
        if kind == "levels":
            continue
        ds = _open(files[(collection, day)], names)
        if kind == "instant":
            surface.append(ds.sel(time=times))
        else:
            before = files.get((collection, previous))
            surface.append(_hourly_means(ds, _open(before, names) if before else None, times))
    const = _open(files[("const_2d_asm_Nx", "00000000")], CONSTANTS["const_2d_asm_Nx"])
    monthly = _open(files[("const_2d_ctm_Nx", "00000000")], CONSTANTS["const_2d_ctm_Nx"])
    month = int(day[4:6]) - 1
    statics = [
        const.isel(time=0, drop=True) if "time" in const.dims else const,
        monthly.isel(time=month if monthly.sizes.get("time", 1) == 12 else 0, drop=True)
        if "time" in monthly.dims
        else monthly,
    ]
    sfc = _minutes(xr.merge([*surface, *statics], compat="override", join="exact"), day)
    levels_path = files[("inst3_3d_asm_Nv", day)]
    pres = _open(levels_path, COLLECTIONS["inst3_3d_asm_Nv"][1]).sel(time=times)
    absent = [lv for lv in LEVELS if lv not in pres["lev"].values]
    if absent:
        raise EofmError(f"{levels_path} lacks model level(s) {absent} of Prithvi WxC.")
    pres = _minutes(pres.sel(lev=list(LEVELS)), day)
    written = [out_dir / f"MERRA2_sfc_{day}.nc", out_dir / f"MERRA_pres_{day}.nc"]
    _write(sfc.load(), written[0])
    _write(pres.load(), written[1])
    return written


def prepare_merra2(raw_dir: Path, out_dir: Path) -> list[Path]:
    """Every day of ``raw_dir`` in Prithvi WxC's layout under ``out_dir``; the files written."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    days = plan(raw_dir, out_dir)
    files = raw_files(raw_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for day in days:
            written += prepare_day(files, day, out_dir)
            log.info("MERRA-2 %s -> %s", day, ", ".join(p.name for p in written[-2:]))
    except BaseException:  # a failed run leaves nothing of its own behind
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written

"""What ``eofm predict`` will write, decided (and checked) before anything is written.

Inputs are expanded (files, folders, globs; shards: ``eofm.cluster``); each scene gets a
plan of its outputs. The rules that keep every user's file safe:

- an output that resolves to any input is refused, with or without ``--overwrite``;
- without ``--overwrite``, no existing file is ever replaced: a scene whose class map
  exists is finished, and only its missing quicklook or vector file is added (from
  that class map); an existing quicklook or vector file beside a missing class map was
  not written by eofm, so the command stops before writing anything.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eofm.errors import EofmError

VECTOR_SUFFIXES = {"parquet": ".parquet", "geoparquet": ".parquet", "geojson": ".geojson"}


@dataclass
class ScenePlan:
    """The outputs of one scene, and which of them this run writes."""

    source: Path
    raster: Path
    write_raster: bool = True
    quicklook: Path | None = None  # set when this run writes it
    vector: Path | None = None  # set when this run writes it
    existing: list[Path] = field(default_factory=list)
    companions: list[Path] = field(default_factory=list)  # streamed with the raster

    @property
    def done(self) -> bool:
        return not (self.write_raster or self.quicklook or self.vector)

    def targets(self) -> list[Path]:
        planned = [self.raster, *self.companions] if self.write_raster else []
        return planned + [p for p in (self.quicklook, self.vector) if p is not None]


def output_stem(source: Path) -> str:
    return source.name.rsplit(".", 1)[0]


def plan_scene(
    source: Path,
    out_dir: Path,
    *,
    quicklook: bool,
    vector: str | None,
    overwrite: bool,
    inputs: Iterable[Path] = (),
    companions: Sequence[str] = (),
) -> ScenePlan:
    """The plan for ``source``; raises before anything is written if it would harm a file.

    ``companions`` are the suffixes of rasters streamed with the class map (e.g.
    ``_entropy``): they are written together, so a scene is finished when all exist."""
    stem = output_stem(source)
    raster = out_dir / f"{stem}.tif"
    streamed = [out_dir / f"{stem}{suffix}.tif" for suffix in companions]
    wanted = {"raster": raster, **{f"companion{i}": p for i, p in enumerate(streamed)}}
    if quicklook:
        wanted["quicklook"] = out_dir / f"{stem}.png"
    if vector:
        wanted["vector"] = out_dir / f"{stem}{VECTOR_SUFFIXES[vector]}"
    protected = {_real(p) for p in (source, *inputs)}
    for path in wanted.values():
        if _real(path) in protected:
            raise EofmError(
                f"Output {path} would replace the input {path if path.exists() else source}; "
                "write to another --out folder (even --overwrite never replaces an input)."
            )
    for path in wanted.values():
        if path.is_dir():
            raise EofmError(
                f"Output {path} is a folder; eofm never replaces a folder, even with "
                "--overwrite. Move it, or write to another --out folder."
            )
    existing = [p for p in wanted.values() if p.exists()]
    if overwrite:
        return ScenePlan(
            source, raster, True, wanted.get("quicklook"), wanted.get("vector"), existing, streamed
        )
    if raster.exists() and all(p.exists() for p in streamed):
        # finished earlier: complete what is missing, from the class map
        missing = {k: p for k, p in wanted.items() if not p.exists()}
        return ScenePlan(
            source,
            raster,
            False,
            missing.get("quicklook"),
            missing.get("vector"),
            existing,
            streamed,
        )
    if raster.exists():
        absent = ", ".join(str(p) for p in streamed if not p.exists())
        raise EofmError(
            f"{raster} exists but {absent} (written with it in one pass) does not; use "
            "--overwrite to predict the scene again, or another --out folder."
        )
    if existing:
        names = ", ".join(str(p) for p in existing)
        raise EofmError(
            f"{names} already exist(s) but {raster} does not, so eofm did not write them; "
            "use --overwrite to replace them, or another --out folder."
        )
    return ScenePlan(
        source, raster, True, wanted.get("quicklook"), wanted.get("vector"), companions=streamed
    )


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def expand_inputs(specs: Sequence[str], resolution_m: float | None = None) -> list[Path]:
    """Files, folders (their *.tif / *.tiff) and glob patterns -> sorted unique paths.

    Multi-file products (a Sentinel-2 ``.SAFE`` folder, a folder of per-band files, band
    files given one by one, a local STAC item) become one VRT each, on a grid of
    ``resolution_m`` metres (``eofm.data.sentinel2_products``)."""
    from eofm.data import sentinel2_products

    found: list[Path] = []
    products: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if sentinel2_products.is_product(path):
            products.append(sentinel2_products.product_vrt(path, resolution_m))
        elif path.is_dir():
            found += [
                p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff") and p.is_file()
            ]
        elif path.is_file():
            found.append(path)
        else:
            matches = [Path(p) for p in glob.glob(spec, recursive=True)]  # ** descends
            if not matches:
                raise EofmError(f"Input {spec} does not exist (and matches no file as a glob).")
            found += [p for p in matches if p.is_file()]
    found = sentinel2_products.group_band_files(found, resolution_m) + products
    if resolution_m is not None and not any(p.suffix == ".vrt" for p in found):
        raise EofmError(
            "--resolution sets the grid of multi-file products (a .SAFE folder, per-band "
            f"files, a STAC item); {list(specs)} holds none, so it would be ignored."
        )
    unique = sorted({p.resolve(): p for p in found}.values(), key=lambda p: str(p))
    if not unique:
        raise EofmError(f"No GeoTIFF found in {list(specs)}.")
    stems: dict[str, Path] = {}
    for scene in unique:
        other = stems.setdefault(output_stem(scene), scene)
        if other != scene:
            raise EofmError(
                f"Inputs {other} and {scene} would both write {output_stem(scene)}.tif; "
                "predict them into different --out folders."
            )
    return unique

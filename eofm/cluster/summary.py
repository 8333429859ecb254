"""``eofm predict --summarize DIR``: the account of a sharded run, from its manifests.

The ``manifest-<i>-of-<n>.json`` of one run (the same ``n`` and the same inputs) are
merged; manifests of an earlier run with another ``n`` or other inputs are named and
set aside (the newest run counts: a rerun with ``--shard 0/1`` over a failed 8-shard
run supersedes it). The command lists the scenes that are missing (a shard that wrote no
manifest or stopped early, or an output deleted since) and those that failed, writes
``summary.json`` and a VRT mosaic of the class maps per CRS (``mosaic-EPSG_<code>.vrt``),
and exits 1 when a scene is missing or failed, 0 when all are in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eofm.atomic import write_text
from eofm.cluster.manifest import FORMAT
from eofm.cluster.vrt import build_vrt
from eofm.errors import EofmError
from eofm.jsonfile import json_text

MANIFEST = re.compile(r"^manifest-(\d+)-of-(\d+)\.json$")
log = logging.getLogger(__name__)
SHOWN = 20  # scenes listed per kind on the terminal; summary.json has them all


def read_manifests(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every manifest in ``folder``, read and checked; an unreadable one is an error."""
    found = []
    for path in sorted(folder.iterdir()):
        if not MANIFEST.match(path.name):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EofmError(f"Manifest {path} cannot be read: {exc}.") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EofmError(f"{path} is not a manifest of eofm predict (format {FORMAT}).")
        found.append((path, data))
    return found


def _crs_name(crs: Any) -> str:
    if crs is None:
        return "no_crs"
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG_{epsg}"
    return "crs_" + hashlib.sha256(crs.to_wkt().encode()).hexdigest()[:8]


def write_mosaics(folder: Path, class_maps: list[Path]) -> dict[str, list[str]]:
    """``mosaic-<CRS>.vrt`` in ``folder`` for each CRS of ``class_maps``."""
    import rasterio

    by_crs: dict[str, list[Path]] = {}
    for path in class_maps:
        with rasterio.open(path) as ds:
            by_crs.setdefault(_crs_name(ds.crs), []).append(path)
    written = {}
    for name, paths in sorted(by_crs.items()):
        target = folder / f"mosaic-{name}.vrt"
        build_vrt(paths, target)
        written[target.name] = [p.name for p in paths]
    return written


def summarize(folder: Path, echo: Callable[[str], None] = log.info) -> int:
    """Merge the manifests in ``folder``; 1 if a scene is missing or failed, else 0."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EofmError(f"--summarize {folder}: no such folder.", exit_code=2)
    manifests = read_manifests(folder)
    if not manifests:
        raise EofmError(
            f"No manifest-<i>-of-<n>.json in {folder}: manifests are written by a sharded "
            "eofm predict (a Slurm array, torchrun, srun or --shard i/n).",
            exit_code=2,
        )
    runs: dict[tuple[int, str], list[tuple[Path, dict]]] = {}
    for path, data in manifests:
        runs.setdefault((data["shard"]["count"], data["inputs_sha256"]), []).append((path, data))
    key = max(runs, key=lambda k: max(d["updated"] for _, d in runs[k]))
    count = key[0]
    current = {d["shard"]["index"]: (p, d) for p, d in runs[key]}
    set_aside = sorted(p.name for k, group in runs.items() if k != key for p, _ in group)
    total = next(iter(current.values()))[1]["inputs"]

    scenes: list[dict] = []
    missing_shards = []
    for index in range(count):
        if index not in current:
            missing_shards.append({"shard": index, "scenes": len(range(index, total, count))})
            continue
        scenes += current[index][1]["scenes"]
    counts = {s: 0 for s in ("done", "skipped-existing", "failed", "pending", "deleted")}
    failed, missing, class_maps = [], [], []
    for scene in scenes:
        status = scene["status"]
        outputs = [folder / o["path"] for o in scene["outputs"]]
        if status in ("done", "skipped-existing") and not all(p.exists() for p in outputs):
            status = "deleted"  # an output went after the run wrote it
        counts[status] += 1
        if status == "failed":
            failed.append({"input": scene["input"], "error": scene["error"]})
        elif status in ("pending", "deleted"):
            missing.append({"input": scene["input"], "why": status})
        else:
            class_maps.append(outputs[0])
    mosaics = write_mosaics(folder, class_maps) if class_maps else {}
    unknown = sum(m["scenes"] for m in missing_shards)
    summary = {
        "format": "eofm-predict-summary/1",
        "shards": count,
        "manifests": sorted(p.name for p, _ in current.values()),
        "set_aside": set_aside,
        "inputs": total,
        "counts": counts,
        "missing_shards": missing_shards,
        "missing": missing,
        "failed": failed,
        "mosaics": mosaics,
    }
    target = folder / "summary.json"
    write_text(target, json_text(summary, str(target), indent=1) + "\n")

    echo(
        f"eofm predict --summarize {folder}: {len(current)} of {count} shard manifest(s), "
        f"{total} scene(s): {counts['done']} done, {counts['skipped-existing']} done before "
        f"(skipped), {len(failed)} failed, {len(missing) + unknown} missing"
    )
    for name in set_aside:
        echo(f"  set aside (an earlier run with other shards or inputs): {name}")
    for shard in missing_shards:
        echo(
            f"  missing: shard {shard['shard']}/{count} wrote no manifest ({shard['scenes']} "
            f"scene(s)); rerun it: eofm predict ... --shard {shard['shard']}/{count}"
        )
    for item in missing[:SHOWN]:
        why = "not reached" if item["why"] == "pending" else "an output was deleted"
        echo(f"  missing: {item['input']} ({why})")
    for item in failed[:SHOWN]:
        echo(f"  failed: {item['input']}: {item['error']}")
    if len(missing) > SHOWN or len(failed) > SHOWN:
        echo(f"  (all of them in {target})")
    for name, maps in mosaics.items():
        echo(f"  mosaic: {folder / name} ({len(maps)} class map(s))")
    return 1 if failed or missing or missing_shards else 0

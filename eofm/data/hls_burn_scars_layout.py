"""The HLS Burn Scars release's layout, light (no torch): scenes and masks by folder,
MGRS tiles and dates from the scene names, and the val/test division of ``validation/``
by tile (see :mod:`eofm.data.hls_burn_scars` for the source of the layout)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from eofm.errors import EofmError

IMAGE_SUFFIX = "_merged.tif"
MASK_SUFFIXES = (".mask.tif", "_mask.tif")
FOLDERS = ("training", "validation")
_NAME = re.compile(r"HLS\.[SL]30\.(?P<tile>T\w{5})\.(?P<date>\d{7})")


def scene_pairs(folder: Path) -> dict[str, tuple[Path, Path]]:
    """scene id -> (image, mask) of one folder; a scene without its mask is an error."""
    pairs = {}
    for image in sorted(folder.glob(f"*{IMAGE_SUFFIX}")):
        scene = image.name[: -len(IMAGE_SUFFIX)]
        masks = [folder / f"{scene}{s}" for s in MASK_SUFFIXES]
        mask = next((m for m in masks if m.is_file()), None)
        if mask is None:
            raise EofmError(f"HLS scene {image} has no mask ({masks[0].name} is missing).")
        pairs[scene] = (image, mask)
    if not pairs:
        raise EofmError(f"{folder} holds no *{IMAGE_SUFFIX} scenes.")
    return pairs


def scene_tile(scene: str) -> str:
    match = _NAME.search(scene)
    return match.group("tile") if match else scene


def scene_date(scene: str) -> tuple[int, int] | None:
    """(year, day of year) from ``YYYYDDD`` in the scene name, or None."""
    match = _NAME.search(scene)
    if not match:
        return None
    date = match.group("date")
    return int(date[:4]), int(date[4:])


def split_by_tile(scenes: Sequence[str], val_share: float) -> tuple[list[str], list[str]]:
    """Whole MGRS tiles to val, then test, in the order of their hash (deterministic).

    Val takes tiles until it holds ``val_share`` of the scenes; with two tiles or more,
    test keeps at least one.
    """
    tiles: dict[str, list[str]] = {}
    for scene in scenes:
        tiles.setdefault(scene_tile(scene), []).append(scene)
    order = sorted(tiles, key=lambda t: hashlib.sha1(t.encode()).hexdigest())
    val: list[str] = []
    for i, tile in enumerate(order):
        if len(val) >= val_share * len(scenes) or (i == len(order) - 1 and i > 0):
            test = [s for t in order[i:] for s in tiles[t]]
            return sorted(val), sorted(test)
        val.extend(tiles[tile])
    return sorted(val), []

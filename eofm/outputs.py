"""Writing outputs safely: temporary names renamed into place, and PNG quicklooks."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eofm.errors import EofmError

PARTIAL_MARK = ".partial-"
#: Class colours for quicklooks (class 0 dark, class 1 water blue, then distinct hues).
PALETTE = np.array(
    [[34, 34, 34], [30, 120, 255], [230, 80, 40], [60, 180, 75], [255, 225, 25], [145, 30, 180]],
    np.uint8,
)
NODATA_COLOUR = np.array([200, 200, 200], np.uint8)


def check_output_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed; error (naming it) if it is not a writable folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EofmError(f"Output folder {out_dir} exists and is not a folder.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EofmError(f"Cannot create output folder {out_dir}: {exc.strerror or exc}.") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise EofmError(f"Output folder {out_dir} is not writable.")
    return out_dir


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success.

    A crash or kill leaves at most a hidden ``.NAME.partial-PID`` file, never a
    half-written ``NAME``; stale partial files of earlier runs are removed first.
    """
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}{PARTIAL_MARK}*"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}{PARTIAL_MARK}{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_quicklook(
    raster: Path, target: Path, num_classes: int, *, probabilities: bool, max_side: int = 1024
) -> None:
    """A small RGB PNG of a class map (palette) or probability map (grey), from overviews."""
    import rasterio

    with rasterio.open(raster) as ds:
        scale = max(1, int(np.ceil(max(ds.width, ds.height) / max_side)))
        shape = (max(1, ds.height // scale), max(1, ds.width // scale))
        if probabilities:
            band = ds.read(num_classes, out_shape=shape)
            grey = np.where(np.isfinite(band), np.clip(band, 0, 1) * 255, 0).astype(np.uint8)
            rgb = np.stack([grey] * 3, axis=-1)
            rgb[~np.isfinite(band)] = NODATA_COLOUR
        else:
            classes = ds.read(1, out_shape=shape)
            rgb = PALETTE[np.minimum(classes, len(PALETTE) - 1)]
            rgb[classes == ds.nodata] = NODATA_COLOUR
    with warnings.catch_warnings():  # a PNG quicklook carries no georeferencing on purpose
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            target, "w", driver="PNG", width=shape[1], height=shape[0], count=3, dtype="uint8"
        ) as png:
            png.write(np.moveaxis(rgb, -1, 0))
    for aux in target.parent.glob(f"{target.name}.aux.xml"):
        aux.unlink()

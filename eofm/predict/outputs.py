"""Writing outputs safely: temporary names renamed into place, and PNG quicklooks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eofm.errors import EofmError

PARTIAL_MARK = ".partial-"
#: Permissions of every output (a plain file under the usual umask).
FILE_MODE = 0o644
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


def _partial_prefix(path: Path) -> str:
    return f".{path.name}{PARTIAL_MARK}"


@contextlib.contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a hidden ``.NAME.lock`` beside it) or fail at once."""
    lock_path = path.with_name(f".{path.name}.lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise EofmError(
                    f"Another process is writing {path} right now; wait for it, or write to "
                    "another --out folder."
                ) from None
            raise
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success.

    The output is locked while it is written, so two processes never write (or clean up)
    the same output. A crash or kill leaves at most a hidden ``.NAME.partial-PID-TOKEN``
    file, never a half-written ``NAME``; partial files of earlier runs of exactly this
    output are removed first (names are compared exactly, never as glob patterns).
    """
    path = Path(path)
    with output_lock(path):
        prefix = _partial_prefix(path)
        for entry in os.scandir(path.parent):
            if entry.name.startswith(prefix):
                Path(entry.path).unlink(missing_ok=True)
        tmp = path.with_name(f"{prefix}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            yield tmp
            os.chmod(tmp, FILE_MODE)
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

"""Writing outputs safely: temporary names renamed into place, and PNG quicklooks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from eofm.errors import EofmError

PARTIAL_MARK = ".partial-"
#: Permissions of every output (a plain file under the usual umask).
FILE_MODE = 0o644


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
    raster: Path,
    target: Path,
    num_classes: int,
    *,
    probabilities: bool,
    class_names: Sequence[str] | None = None,
    backdrop: tuple[Path, Sequence[int]] | None = None,
    max_side: int = 1024,
) -> None:
    """A PNG of the map, read from its overviews: the classes over the input's backdrop
    (``backdrop``: the scene and the 1-based indexes of its RGB, or one grey, band) with
    a legend, or the last class's probability."""
    import rasterio

    from eofm.evaluation.pictures import downsample_shape, map_quicklook

    names = list(class_names or [f"class {i}" for i in range(num_classes)])
    with rasterio.open(raster) as ds:
        shape = downsample_shape(ds.height, ds.width, max_side)
        if probabilities:
            layer, classes = ds.read(num_classes, out_shape=shape), None
        else:
            layer, classes = None, ds.read(1, out_shape=shape)
    image = None
    if backdrop is not None:
        scene, indexes = backdrop
        with rasterio.open(scene) as ds:
            image = ds.read(list(indexes), out_shape=(len(indexes), *shape)).astype(np.float64)
            if ds.nodata is not None:
                image[image == ds.nodata] = np.nan
    title = f"{Path(raster).name}: {names[-1]} probability" if probabilities else Path(raster).name
    map_quicklook(image, classes, names, target, probability=layer, title=title)

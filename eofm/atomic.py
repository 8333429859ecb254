"""Writing files so that a reader never sees half of one, and a user's files are never lost.

Every file eofm writes is made under a hidden temporary name beside its target,
``.NAME.partial-PID-TOKEN``, and renamed into place only once complete (``os.replace``
is atomic within a folder). A failure, Ctrl-C or SIGTERM removes the partial file; a
kill that leaves one behind is swept by the next run (:func:`remove_stale_partials`,
which reads the writer's process id from the name). Outputs are locked while written
(``filelock``: on Linux, macOS and Windows), so two processes never write, or clean up,
the same output.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from eofm.errors import EofmError

#: Permissions of every file eofm writes: rw for the owner, r for the others, like a plain
#: ``open()`` under the usual umask (temporary files would otherwise be 0600).
FILE_MODE = 0o644
FOLDER_MODE = 0o755
PARTIAL_MARK = ".partial-"
#: ``.NAME.partial-PID-TOKEN`` and what GDAL or zarr make beside it (``….gtiff``, ``….ovr.tmp``)
_PARTIAL = re.compile(r"^\..+\.partial-(?P<pid>\d+)-[0-9a-f]{8}(\.[A-Za-z0-9_.]+)?$")


def partial_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` that names this process."""
    return path.with_name(f".{path.name}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def remove_path(path: Path) -> None:
    """Remove a file or a folder (what a partial output may be), if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _set_modes(path: Path) -> None:
    if path.is_dir():
        path.chmod(FOLDER_MODE)
        for entry in path.rglob("*"):
            entry.chmod(FOLDER_MODE if entry.is_dir() else FILE_MODE)
    else:
        path.chmod(FILE_MODE)


def check_replaceable(path: Path, written_by_eofm: Callable[[Path], bool] | None = None) -> None:
    """Refuse (naming it) to replace a folder at ``path`` unless ``written_by_eofm`` says
    eofm made it: ``--overwrite`` replaces eofm's outputs, never a user's folder."""
    if path.is_dir() and not (written_by_eofm and written_by_eofm(path)):
        raise EofmError(
            f"{path} is a folder that eofm did not write; it is never replaced, even with "
            "--overwrite. Move it, or write to another --out folder.",
            exit_code=2,
        )


@contextlib.contextmanager
def atomic_path(
    path: Path, written_by_eofm: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (the caller makes a file or a folder there);
    rename it to ``path`` only when the block succeeds, and remove it otherwise.

    An existing folder at ``path`` is replaced only when ``written_by_eofm(path)`` holds."""
    path = Path(path)
    check_replaceable(path, written_by_eofm)
    tmp = partial_path(path)
    try:
        yield tmp
        _set_modes(tmp)
        if path.is_dir() and not path.is_symlink():
            check_replaceable(path, written_by_eofm)
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        remove_path(tmp)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a hidden ``.NAME.lock`` beside it, removed on
    release) or fail at once, naming it."""
    from filelock import FileLock, Timeout

    lock_path = path.with_name(f".{path.name}.lock")
    lock = FileLock(lock_path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise EofmError(
            f"Another process is writing {path} right now; wait for it, or write to another "
            "--out folder."
        ) from None
    try:
        yield
    finally:  # filelock notices a lock file unlinked while held, and takes a fresh one
        lock_path.unlink(missing_ok=True)
        lock.release()


@contextlib.contextmanager
def atomic_output(
    path: Path, written_by_eofm: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """:func:`atomic_path` under :func:`output_lock`; partial files of earlier runs of
    exactly this output are removed first (names compared exactly, never as patterns).
    The lock may be released from another thread than the one that took it."""
    path = Path(path)
    with output_lock(path):
        prefix = f".{path.name}{PARTIAL_MARK}"
        for entry in os.scandir(path.parent):
            if entry.name.startswith(prefix):
                remove_path(Path(entry.path))
        with atomic_path(path, written_by_eofm) as tmp:
            yield tmp


def _process_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove the partial files and folders in ``folder`` whose writing process is gone
    (a ``kill -9``, a power cut); returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _PARTIAL.match(entry.name)
            if match and _process_gone(int(match["pid"])):
                remove_path(Path(entry.path))
                removed.append(Path(entry.path))
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` runs (partial files
    are removed, locks released) before the process exits as on Ctrl-C."""


class _Stop:
    """Signals noted while :func:`signals_deferred` holds (its depth), to be raised later."""

    depth = 0
    pending: int | None = None


def _raise_for(signum: int) -> None:
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _on_signal(signum: int, frame: object) -> None:
    if _Stop.depth:  # inside a pipeline: raised at its next safe point
        _Stop.pending = signum
        return
    _raise_for(signum)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Within, SIGINT and SIGTERM are noted rather than raised at once: an exception
    raised asynchronously inside a queue's or a thread's lock can leave a pipeline stage
    waiting forever (it was seen: a join on a worker whose wake-up was lost).
    :func:`raise_if_stopped` raises a noted signal at a safe point; leaving the outermost
    block raises it too."""
    _Stop.depth += 1
    try:
        yield
    finally:
        _Stop.depth -= 1
    if not _Stop.depth:
        raise_if_stopped()


def raise_if_stopped() -> None:
    """Raise the signal noted by :func:`signals_deferred`, if any (a safe point)."""
    if _Stop.pending is not None:
        signum, _Stop.pending = _Stop.pending, None
        _raise_for(signum)


def unwinding_on_sigterm(function: Callable) -> Callable:
    """Run ``function`` with SIGTERM raising :class:`Terminated` as SIGINT raises
    ``KeyboardInterrupt`` (both deferred inside :func:`signals_deferred`), the previous
    handlers restored afterwards."""
    import functools

    @functools.wraps(function)
    def wrapped(*args: object, **kwargs: object) -> object:
        if threading.current_thread() is not threading.main_thread():
            return function(*args, **kwargs)
        previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return function(*args, **kwargs)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return wrapped


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

"""Prediction buffers on ordinary memory pages, not transparent huge pages.

numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) for every
array of 4 MB or more. On a virtual machine that hands its free memory back to the host
(free page reporting works on 2 MB blocks), the first touch of each huge page then waits
for the host to back it again. Measured on this project's 2-core VM, after 8 s idle:
touching 280 MB of new arrays took 1.8-2.3 s on huge pages and 0.15-0.18 s on 4 kB pages.
Prediction allocates about 300 MB of strip, accumulator and weight buffers at the start of
a scene, so a one-scene run lost more than a second to it, while buffers reused over many
scenes gained nothing measurable from huge pages. Prediction therefore turns numpy's
request off while it streams and restores the previous setting afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


def _numpy_switch() -> Callable[[bool], bool] | None:
    """numpy's setter of the huge-page request (returns the previous value), if any."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, "_set_madvise_hugepage", None)


@contextlib.contextmanager
def ordinary_pages() -> Iterator[None]:
    """Within the context, numpy allocates without asking for transparent huge pages
    (the ``NUMPY_MADVISE_HUGEPAGE=0`` behaviour); the previous setting comes back at exit."""
    switch = _numpy_switch()
    if switch is None:
        yield
        return
    previous = switch(False)
    try:
        yield
    finally:
        switch(previous)

"""Prediction buffers on ordinary memory pages, not transparent huge pages.

numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) for every
array of 4 MB or more. On a virtual machine that hands its free memory back to the host,
the first touch of such a page can wait for the host to back it again. On this project's
2-core VM, ``benchmarks/first_touch.py`` (280 MB of new strip-sized arrays, fresh
processes, 8 s idle before each, medians of 3) measured 2.58 s on huge pages against
0.44 s on 4 kB pages. A first 8k scene makes about 40 huge pages of strip and accumulator
buffers; with the request off, ``benchmarks/predict_pipeline.py`` measured 44.0 against
37.5 MP/s (7 runs, side by side), and later scenes, whose buffers are warm, the same
within the noise. Prediction therefore turns numpy's request off while it streams and
restores the previous setting afterwards.
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

"""A class map's Cloud-Optimized GeoTIFF, compressed tile by tile while the map streams.

GDAL's COG driver compresses every tile of the map and of its overviews once the map is
finished: a serial tail of 0.26-0.34 s per 8k scene on two cores (measured), after the
stream. Here the write thread cuts each tile (``blocksize`` px, of the map and of every
overview level, the picks of ``overviews``) as soon as its rows are final; tiles of one
value are compressed once and reused, the others on a few threads, with the DEFLATE
library GDAL itself calls (libdeflate, at the level through which libtiff passes GDAL's
default level 6: found by a probe), into a scratch file. At the end the file is laid
out as GDAL lays out a COG (the "COG layout" of GDAL's COG driver documentation):

- GDAL's own header: the IFDs, georeferencing and structural metadata, made by GDAL for
  a 1 x 1 map with the same georeferencing, written sparse, and extended to the map's
  size and levels (:func:`cog_header`), with the tile offsets and byte counts filled in;
- every level's tiles, the smallest level first, row by row, each preceded by its size
  (4 bytes) and followed by a repeat of its last 4 bytes (GDAL's block leader and
  trailer); edge tiles padded with zeros, as GDAL pads them.

So the bytes are GDAL's (``tests/test_cog_stream.py`` compares whole files with GDAL's
COG). :func:`streamed_cog` says where this is used: uint8 one-band maps whose COG is a
classic TIFF, whose header holds only what :func:`cog_header` knows, on a GDAL whose
DEFLATE output equals this module's for a probe tile at some libdeflate level (found
once per process; a GDAL built on zlib has none). Elsewhere GDAL's copy is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import struct
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from eofm.predict.overviews import OverviewPicks, overview_sizes, pyramid_vrt

#: libdeflate's levels, the one libtiff uses for GDAL's default first (measured: 7 for
#: GDAL's level 6 with GDAL 3.10 and its libtiff).
LIBDEFLATE_LEVELS = (7, 6, 8, 1, 2, 3, 4, 5, 9, 10, 11, 12)
#: Maps above this many pixels may need BigTIFF, whose header this module does not patch.
MAX_PIXELS = 1 << 31
#: Threads compressing tiles, and tiles (64 kB each) queued for them at most.
MAX_COMPRESSING_THREADS = 4
TILES_IN_FLIGHT = 32
_TILE_OFFSETS, _TILE_BYTE_COUNTS = 324, 325
#: struct codes of the TIFF types this module reads or copies: BYTE ASCII SHORT LONG
#: FLOAT DOUBLE LONG8.
_TYPE_CODES = {1: "B", 2: "c", 3: "H", 4: "I", 11: "f", 12: "d", 16: "Q"}


@functools.cache
def _loaded_libdeflate() -> str | None:
    """The libdeflate this process loaded with GDAL (rasterio's wheels bundle one)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "libdeflate" in os.path.basename(path):
                    return path
    except OSError:
        pass
    return ctypes.util.find_library("deflate")


class Deflate:
    """zlib-wrapped DEFLATE through libdeflate (what libtiff writes for COMPRESS=DEFLATE).

    One compressor per thread: libdeflate's compressors are not shared between threads.
    ctypes releases the GIL for the call, so other stages run meanwhile."""

    def __init__(self, library: str, level: int) -> None:
        lib = ctypes.CDLL(library)
        lib.libdeflate_alloc_compressor.restype = ctypes.c_void_p
        lib.libdeflate_alloc_compressor.argtypes = [ctypes.c_int]
        lib.libdeflate_zlib_compress_bound.restype = ctypes.c_size_t
        lib.libdeflate_zlib_compress_bound.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.libdeflate_zlib_compress.restype = ctypes.c_size_t
        lib.libdeflate_zlib_compress.argtypes = [ctypes.c_void_p] + [
            ctypes.c_void_p,
            ctypes.c_size_t,
        ] * 2
        lib.libdeflate_free_compressor.argtypes = [ctypes.c_void_p]
        self._lib, self._level = lib, level
        self._local = threading.local()
        self._made: list[int] = []
        self._lock = threading.Lock()

    def _compressor(self) -> int:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._lib.libdeflate_alloc_compressor(self._level)
            if not handle:
                raise MemoryError("libdeflate could not allocate a compressor")
            self._local.handle = handle
            with self._lock:
                self._made.append(handle)
        return handle

    def compress(self, data: np.ndarray) -> bytes:
        """The zlib stream of ``data``'s bytes (C-contiguous)."""
        handle = self._compressor()
        bound = self._lib.libdeflate_zlib_compress_bound(handle, data.nbytes)
        out = getattr(self._local, "out", None)
        if out is None or len(out) < bound:
            out = self._local.out = ctypes.create_string_buffer(bound)
        size = self._lib.libdeflate_zlib_compress(handle, data.ctypes.data, data.nbytes, out, bound)
        if not size:
            raise RuntimeError("libdeflate failed to compress a tile")
        return ctypes.string_at(out, size)

    def __del__(self) -> None:
        for handle in getattr(self, "_made", []):
            self._lib.libdeflate_free_compressor(handle)


def probe_tile(blocksize: int) -> np.ndarray:
    """A tile with runs, edges and noise, so that DEFLATE's choices show in its bytes."""
    rng = np.random.default_rng(7)
    tile = np.zeros((blocksize, blocksize), np.uint8)
    tile[blocksize // 4 :, : blocksize // 2] = 1
    tile[: blocksize // 3, blocksize // 3 :] = 255
    noise = rng.random((blocksize, blocksize)) < 0.05
    tile[noise] = rng.integers(0, 4, int(noise.sum()))
    return tile


def _tiff_entries(header: bytes) -> list[dict[int, tuple[int, int, int, int]]]:
    """Per IFD of a classic little-endian TIFF: tag -> (type, count, value, entry offset)."""
    if header[:4] != b"II*\x00":
        raise ValueError("not a classic little-endian TIFF")
    ifds = []
    offset = struct.unpack_from("<I", header, 4)[0]
    while offset:
        (count,) = struct.unpack_from("<H", header, offset)
        entries = {}
        for i in range(count):
            at = offset + 2 + 12 * i
            tag, kind, n, value = struct.unpack_from("<HHII", header, at)
            entries[tag] = (kind, n, value, at)
        ifds.append(entries)
        offset = struct.unpack_from("<I", header, offset + 2 + 12 * count)[0]
    return ifds


def _value_size(kind: int, count: int) -> int:
    return count * struct.calcsize(_TYPE_CODES[kind])


def _outside(kind: int, count: int) -> bool:
    """Whether a TIFF entry's value lies outside its 12 bytes (more than 4 bytes)."""
    return _value_size(kind, count) > 4


def _values_format(entry: tuple[int, int, int, int]) -> tuple[str, int]:
    """``(struct format, offset)`` of an entry's values: in the entry when they fit."""
    kind, count, value, at = entry
    return f"<{count}{_TYPE_CODES[kind]}", value if _outside(kind, count) else at + 8


def tile_arrays(header: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(offsets, byte counts)`` of each IFD's tiles in a classic TIFF."""

    def values(entry: tuple[int, int, int, int]) -> np.ndarray:
        layout, where = _values_format(entry)
        return np.array(struct.unpack_from(layout, header, where), np.int64)

    return [
        (values(entries[_TILE_OFFSETS]), values(entries[_TILE_BYTE_COUNTS]))
        for entries in _tiff_entries(header)
    ]


@functools.cache
def gdal_deflate_level(library: str, blocksize: int) -> int | None:
    """The libdeflate level at which :class:`Deflate` on ``library`` makes GDAL's DEFLATE
    tiles byte for byte (one probe tile written by GDAL's COG driver in memory), or None."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as raster_copy
    from rasterio.transform import from_origin

    tile = probe_tile(blocksize)
    profile = dict(driver="GTiff", width=blocksize, height=blocksize, count=1, dtype="uint8")
    profile["transform"] = from_origin(0, blocksize, 1, 1)  # georeferenced: no warning
    try:
        with MemoryFile() as plain, MemoryFile() as cog:
            with plain.open(**profile) as ds:
                ds.write(tile[None])
            with rasterio.open(plain.name) as src:
                raster_copy(src, cog.name, driver="COG", compress="DEFLATE", blocksize=blocksize)
            written = bytes(cog.getbuffer())
        (offsets, counts) = tile_arrays(written)[0]
        gdal_bytes = written[offsets[0] : offsets[0] + counts[0]]
        for level in LIBDEFLATE_LEVELS:
            if Deflate(library, level).compress(tile) == gdal_bytes:
                return level
    except Exception:  # noqa: BLE001 - any doubt keeps GDAL's own copy
        return None
    return None


def level_sizes(height: int, width: int, blocksize: int) -> list[tuple[int, int]]:
    """``(height, width)`` of the map, then of each overview level GDAL makes."""
    return [(height, width), *overview_sizes(height, width, blocksize)]


class LevelTiles:
    """The tiles of one level (the map or an overview), filled from blocks of rows in any
    order and handed to ``done(index, tile)`` once every pixel of theirs has arrived."""

    def __init__(self, height: int, width: int, blocksize: int) -> None:
        self.height, self.width, self.blocksize = height, width, blocksize
        self.tiles_across = -(-width // blocksize)
        self.count = self.tiles_across * -(-height // blocksize)
        self._open: dict[int, list] = {}  # index -> [tile, pixels still missing]

    def write(self, data: np.ndarray, row: int, col: int, done) -> None:
        """Pixels ``data (n, w)`` at level row/col ``row``/``col``."""
        b = self.blocksize
        n, w = data.shape
        for tile_row in range(row // b, (row + n - 1) // b + 1):
            y0, y1 = max(row, tile_row * b), min(row + n, (tile_row + 1) * b)
            for tile_col in range(col // b, (col + w - 1) // b + 1):
                x0, x1 = max(col, tile_col * b), min(col + w, (tile_col + 1) * b)
                index = tile_row * self.tiles_across + tile_col
                entry = self._open.get(index)
                if entry is None:  # zeros: GDAL pads edge tiles with zeros
                    area = (min(b, self.height - tile_row * b)) * min(b, self.width - tile_col * b)
                    entry = self._open[index] = [np.zeros((b, b), np.uint8), area]
                tile = entry[0]
                tile[
                    y0 - tile_row * b : y1 - tile_row * b, x0 - tile_col * b : x1 - tile_col * b
                ] = data[y0 - row : y1 - row, x0 - col : x1 - col]
                entry[1] -= (y1 - y0) * (x1 - x0)
                if entry[1] == 0:
                    del self._open[index]
                    done(index, tile)


#: Tags of a one-band COG's first IFD that this module knows how to extend to a pyramid:
#: the image structure, GDAL's nodata, and the georeferencing (first IFD only).
_STRUCTURE = {256, 257, 258, 259, 262, 277, 284, 317, 322, 323, 324, 325, 339, 42113}
_GEOREFERENCING = {33550, 33922, 34264, 34735, 34736, 34737}
_NEW_SUBFILE_TYPE = 254
#: GDAL's dataset metadata (the tags of :mod:`eofm.publishing.provenance`): the map's IFD only.
_GDAL_METADATA = 42112


def gdal_header_template(profile: dict, blocksize: int, tags: Mapping[str, str] = {}) -> bytes:
    """GDAL's COG of a 1 x 1 px map with ``profile``'s georeferencing and nodata, made from
    a VRT as the staged COG is and written sparse (no tile): what :func:`cog_header`
    extends to the map's size and levels; ``tags`` are its dataset metadata."""
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as raster_copy

    xml = pyramid_vrt(profile | {"width": 1, "height": 1}, None, [], tags)
    with MemoryFile(xml.encode(), ext=".vrt") as vrt, MemoryFile() as cog:
        raster_copy(
            vrt.name,
            cog.name,
            driver="COG",
            compress="DEFLATE",
            blocksize=blocksize,
            sparse_ok="TRUE",
        )
        return bytes(cog.getbuffer())


def _entry(tag: int, kind: int, count: int, value: int) -> bytes:
    return struct.pack("<HHII", tag, kind, count, value)


def _size_entry(tag: int, value: int) -> bytes:
    """ImageWidth/ImageLength as libtiff writes them: SHORT when the value fits."""
    return _entry(tag, 3, 1, value) if value <= 0xFFFF else _entry(tag, 4, 1, value)


def cog_header(template: bytes, sizes: list[tuple[int, int]], blocksize: int) -> bytes | None:
    """The header GDAL writes for a one-band COG whose levels have ``sizes`` (the map,
    then its overviews), from GDAL's own header of a 1 x 1 map with the same metadata
    (:func:`gdal_header_template`); None where the template holds something this does
    not know how to extend. Tile offsets and byte counts are left as zeros.

    GDAL's layout (its COG driver, ``LAYOUT=IFDS_BEFORE_DATA``, as measured on its files):
    the structural metadata; the map's IFD and the values of its georeferencing entries,
    word-aligned; the overviews' IFDs (a NewSubfileType of 1, then the map's structure
    entries); then each IFD's tile offsets and byte counts, in IFD order. An array of
    one value sits in its entry; ImageWidth and ImageLength are SHORT where they fit."""
    entries = _tiff_entries(template)
    if len(entries) != 1 or not set(entries[0]) <= _STRUCTURE | _GEOREFERENCING | {_GDAL_METADATA}:
        return None
    ifd = entries[0]
    if any(kind not in _TYPE_CODES for kind, *_ in ifd.values()):
        return None
    structure = sorted(tag for tag in ifd if tag in _STRUCTURE)
    arrays = (_TILE_OFFSETS, _TILE_BYTE_COUNTS)
    if any(_outside(*ifd[tag][:2]) for tag in structure if tag not in arrays):
        return None  # an overview IFD copies these entries alone, without their values
    (first,) = struct.unpack_from("<I", template, 4)
    values_end = first + 2 + 12 * len(ifd) + 4
    for kind, count, value, _ in ifd.values():  # the georeferencing values follow the IFD
        if _outside(kind, count):
            values_end = max(values_end, value + _value_size(kind, count))
    values_end += values_end & 1  # word-aligned, with a zero byte
    tiles = [-(-h // blocksize) * -(-w // blocksize) for h, w in sizes]
    overview_ifd = 2 + 12 * (len(structure) + 1) + 4
    position = values_end + overview_ifd * (len(sizes) - 1)
    arrays_start, array_at = position, []
    for n in tiles:  # where each IFD's offsets and counts go (in the entry when n == 1)
        array_at.append((position, position + 4 * n) if n > 1 else (0, 0))
        position += 8 * n if n > 1 else 0

    def level_entries(level: int) -> bytes:
        (h, w), n = sizes[level], tiles[level]
        made = [_entry(_NEW_SUBFILE_TYPE, 4, 1, 1)] if level else []
        for tag in structure if level else sorted(ifd):
            if tag in (256, 257):
                made.append(_size_entry(tag, w if tag == 256 else h))
            elif tag in arrays:
                made.append(_entry(tag, 4, n, array_at[level][arrays.index(tag)]))
            else:
                at = ifd[tag][3]
                made.append(template[at : at + 12])
        return struct.pack("<H", len(made)) + b"".join(made)

    head = bytearray(template[:values_end].ljust(values_end, b"\0"))
    head[first : first + 2 + 12 * len(ifd)] = level_entries(0)
    struct.pack_into("<I", head, first + 2 + 12 * len(ifd), values_end if len(sizes) > 1 else 0)
    for level in range(1, len(sizes)):
        following = values_end + overview_ifd * level if level + 1 < len(sizes) else 0
        head += level_entries(level) + struct.pack("<I", following)
    head += bytes(position - arrays_start)
    return bytes(head)


def streamed_cog(
    target: Path, profile: dict, blocksize: int, tags: Mapping[str, str] = {}
) -> StreamedCog | None:
    """A :class:`StreamedCog` writing ``target`` where this module makes the COG of a map
    with ``profile`` (and dataset metadata ``tags``) byte for byte as GDAL would, else None
    (GDAL's copy is used)."""
    if profile.get("count") != 1 or np.dtype(profile.get("dtype")) != np.uint8:
        return None
    if profile["width"] * profile["height"] > MAX_PIXELS:
        return None
    library = _loaded_libdeflate()
    level = gdal_deflate_level(library, blocksize) if library else None
    if level is None:
        return None
    sizes = level_sizes(profile["height"], profile["width"], blocksize)
    header = cog_header(gdal_header_template(profile, blocksize, tags), sizes, blocksize)
    if header is None:
        return None
    return StreamedCog(target, sizes, blocksize, (library, level), header)


class StreamedCog:
    """The COG of a uint8 map, built from its blocks of finished rows (:meth:`add`) and
    laid out by :meth:`finish` after ``header`` (:func:`cog_header`). A context: the
    scratch file of compressed tiles is removed at exit."""

    def __init__(
        self,
        target: Path,
        sizes: list[tuple[int, int]],
        blocksize: int,
        deflate: tuple[str, int],
        header: bytes,
    ) -> None:
        """``sizes``: :func:`level_sizes` of the map."""
        self.target, self.header = target, header
        self.picks = OverviewPicks(*sizes[0], blocksize)
        self.levels = [LevelTiles(h, w, blocksize) for h, w in sizes]
        self.where = [np.full((level.count, 2), -1, np.int64) for level in self.levels]
        self.deflate = Deflate(*deflate)
        self.scratch = target.with_name(target.name + ".tiles")
        self._written = 0
        self._file = None
        self._uniform: dict[int, bytes] = {}  # value -> bytes of a tile of that value
        self._pool = None
        self._slots = threading.BoundedSemaphore(TILES_IN_FLIGHT)
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []

    def __enter__(self) -> StreamedCog:
        from concurrent.futures import ThreadPoolExecutor

        self._file = open(self.scratch, "wb")  # noqa: SIM115 - closed in __exit__
        workers = min(MAX_COMPRESSING_THREADS, len(os.sched_getaffinity(0)))
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="eofm-deflate")
        return self

    def __exit__(self, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._file is not None:
            self._file.close()
        self.scratch.unlink(missing_ok=True)

    def add(self, block: np.ndarray, top: int, left: int) -> None:
        """The finished rows ``block (1, n, w)`` at scene row/col ``top``/``left``."""
        self.levels[0].write(block[0], top, left, self._done(0))
        for index, picked, row, col in self.picks.take(block, top, left):
            self.levels[index + 1].write(picked[0], row, col, self._done(index + 1))

    def _done(self, level: int):
        """What takes a finished tile of ``level``: tiles of one value are compressed once
        and reused (compression is deterministic: all-nodata tiles beside a swath, one
        class over whole tiles); the others go to the compressing threads, at most
        ``TILES_IN_FLIGHT`` at once, so that no one thread sets the pace."""

        def store(index: int, data: bytes) -> None:
            with self._lock:
                self._file.write(data)
                self.where[level][index] = (self._written, len(data))
                self._written += len(data)

        def compress(index: int, tile: np.ndarray) -> None:
            try:
                store(index, self.deflate.compress(tile))
            except BaseException as exc:  # noqa: BLE001 - raised by finish()
                self._failures.append(exc)
            finally:
                self._slots.release()

        def take(index: int, tile: np.ndarray) -> None:
            low = int(tile.min())
            if low == tile.max():
                data = self._uniform.get(low)
                if data is None:
                    data = self._uniform[low] = self.deflate.compress(tile)
                store(index, data)
                return
            self._slots.acquire()
            self._pool.submit(compress, index, tile)

        return take

    def finish(self) -> None:
        """Write the COG to ``target``: the header, then every tile in GDAL's order."""
        self._pool.shutdown(wait=True)
        if self._failures:
            raise self._failures[0]
        if (np.concatenate(self.where)[:, 0] < 0).any():
            raise RuntimeError(f"{self.target}: the map's tiles did not all arrive")
        self._file.close()
        self._file = None
        patched = bytearray(self.header)
        order = list(range(len(self.levels)))[::-1]  # the smallest level first
        offsets, position = {}, len(patched)
        for level in order:
            sizes = self.where[level][:, 1]
            starts = position + 4 + np.concatenate(([0], np.cumsum(sizes + 8)[:-1]))
            offsets[level] = starts
            position = int(starts[-1] + sizes[-1] + 4)
        for level, ifd in enumerate(_tiff_entries(self.header)):
            for tag, values in (
                (_TILE_OFFSETS, offsets[level]),
                (_TILE_BYTE_COUNTS, self.where[level][:, 1]),
            ):
                layout, where = _values_format(ifd[tag])
                struct.pack_into(layout, patched, where, *values.tolist())
        with open(self.scratch, "rb") as tiles, open(self.target, "wb") as out:
            out.write(patched)
            for level in order:
                for start, size in self.where[level].tolist():
                    data = os.pread(tiles.fileno(), size, start)
                    out.write(struct.pack("<I", size))
                    out.write(data)
                    out.write(data[-4:])

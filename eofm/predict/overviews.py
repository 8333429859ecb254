"""Nearest-neighbour COG overviews built while a class map streams, not after it.

GDAL's COG driver would otherwise read the finished full-resolution map back and
resample it, a serial tail after the stream. For class maps (nearest resampling) the
overview pixels are plain picks of full-resolution pixels, so they are taken from each
block of rows as it is finalised and staged in one small GeoTIFF per level. The COG is
then copied from a VRT that lists those levels as the band's overviews, and GDAL only
compresses and lays out the tiles. The picks follow GDAL's own rule (each level halves
the previous one, rounding sizes down, until the map fits in one block; a destination
pixel ``i`` takes source pixel ``int(0.5 + i * src/dst)`` of the previous level), so the
file is byte for byte what GDAL makes from the full map; ``tests/test_overviews.py``
checks this against GDAL on many sizes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np


def overview_sizes(height: int, width: int, blocksize: int) -> list[tuple[int, int]]:
    """``(height, width)`` of each overview level the COG driver makes by default."""
    sizes = []
    while height > blocksize or width > blocksize:
        height, width = max(1, height // 2), max(1, width // 2)
        sizes.append((height, width))
    return sizes


def _picks(source: int, target: int) -> np.ndarray:
    """The source index each of ``target`` pixels takes (nearest, GDAL's rounding)."""
    return np.minimum((0.5 + np.arange(target) * (source / target)).astype(np.int64), source - 1)


def _index(picks: np.ndarray) -> slice | np.ndarray:
    """``picks`` as a slice when evenly spaced (a view, not a gather), else as is."""
    if len(picks) == 1:
        return slice(int(picks[0]), int(picks[0]) + 1)
    step = int(picks[1] - picks[0])
    if step > 0 and np.array_equal(np.diff(picks), np.full(len(picks) - 1, step)):
        return slice(int(picks[0]), int(picks[-1]) + 1, step)
    return picks


@dataclass
class OverviewLevel:
    height: int
    width: int
    path: Path
    dataset: Any = None


class OverviewPicks:
    """Which full-resolution pixels each overview level of a ``height x width`` map takes,
    and those pixels cut from a block of finished rows."""

    def __init__(self, height: int, width: int, blocksize: int) -> None:
        self.rows_and_cols: list[tuple[np.ndarray, np.ndarray]] = []
        rows, cols = np.arange(height), np.arange(width)
        previous = (height, width)
        for h, w in overview_sizes(height, width, blocksize):
            rows, cols = rows[_picks(previous[0], h)], cols[_picks(previous[1], w)]
            self.rows_and_cols.append((rows, cols))
            previous = (h, w)

    def take(
        self, block: np.ndarray, top: int, left: int
    ) -> Iterator[tuple[int, np.ndarray, int, int]]:
        """``(level index, picked pixels (bands, n, w), level row, level column)`` of the
        block ``(bands, n, w)`` at scene row/col ``top``/``left``, for each level it touches."""
        n, w = block.shape[-2:]
        for index, (rows, cols) in enumerate(self.rows_and_cols):
            r0, r1 = np.searchsorted(rows, [top, top + n])
            c0, c1 = np.searchsorted(cols, [left, left + w])
            if r0 == r1 or c0 == c1:
                continue
            picked = block[:, _index(rows[r0:r1] - top)][:, :, _index(cols[c0:c1] - left)]
            yield index, picked, int(r0), int(c0)


def pyramid_vrt(
    profile: dict, full: Path | None, overviews: Sequence[Path], tags: Mapping[str, str] = {}
) -> str:
    """The VRT of a uint8 map (``full``, or no source: all nodata) that lists ``overviews``
    as its band's overviews, with the georeferencing and nodata of ``profile`` and the
    dataset metadata ``tags`` (which GDAL's COG copy keeps)."""
    from rasterio.crs import CRS

    width, height = profile["width"], profile["height"]
    crs = profile.get("crs")
    georef = f"<SRS>{escape(CRS.from_user_input(crs).to_wkt())}</SRS>" if crs else ""
    values = ", ".join(repr(v) for v in profile["transform"].to_gdal())
    georef += f"<GeoTransform>{values}</GeoTransform>"  # rasterio sets one, even identity
    if tags:
        items = "".join(f"<MDI key={quoteattr(k)}>{escape(v)}</MDI>" for k, v in tags.items())
        georef += f"<Metadata>{items}</Metadata>"
    levels = "".join(
        f'<Overview><SourceFilename relativeToVRT="0">{escape(str(path))}'
        "</SourceFilename><SourceBand>1</SourceBand></Overview>"
        for path in overviews
    )
    source = ""
    if full is not None:
        source = (
            f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(full))}'
            "</SourceFilename><SourceBand>1</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize={quoteattr(str(width))} '
            f"ySize={quoteattr(str(height))}/>"
            f'<DstRect xOff="0" yOff="0" xSize={quoteattr(str(width))} '
            f"ySize={quoteattr(str(height))}/></SimpleSource>"
        )
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{georef}'
        f'<VRTRasterBand dataType="Byte" band="1"><NoDataValue>{profile["nodata"]}</NoDataValue>'
        f"{source}{levels}</VRTRasterBand></VRTDataset>"
    )


class OverviewPyramid:
    """Stages the overview levels of a uint8 class map from its blocks of finished rows."""

    def __init__(
        self, staging: Path, profile: dict, blocksize: int, tags: Mapping[str, str] = {}
    ) -> None:
        self.picks = OverviewPicks(profile["height"], profile["width"], blocksize)
        self.profile, self.tags = profile, dict(tags)
        self.levels = [
            OverviewLevel(len(rows), len(cols), staging.with_name(f"{staging.name}.ovr{index + 1}"))
            for index, (rows, cols) in enumerate(self.picks.rows_and_cols)
        ]

    def __enter__(self) -> OverviewPyramid:
        import rasterio

        transform = self.profile["transform"]
        for level in self.levels:
            scale = transform @ transform.scale(
                self.profile["width"] / level.width, self.profile["height"] / level.height
            )
            size = {"height": level.height, "width": level.width, "transform": scale}
            level.dataset = rasterio.open(level.path, "w", **(self.profile | size))
        return self

    def __exit__(self, *_: object) -> None:
        for level in self.levels:
            if level.dataset is not None:
                level.dataset.close()

    def add(self, block: np.ndarray, top: int, left: int) -> None:
        """Take the overview pixels of ``block`` (``(1, n, w)`` at scene row/col top/left)."""
        from rasterio.windows import Window

        for index, picked, r0, c0 in self.picks.take(block, top, left):
            h, w = picked.shape[-2:]
            self.levels[index].dataset.write(picked, window=Window(c0, r0, w, h))

    def remove(self) -> None:
        for level in self.levels:
            level.path.unlink(missing_ok=True)

    def write_vrt(self, full: Path, vrt: Path) -> Path:
        """A VRT of the full-resolution map ``full`` that lists the staged levels as its
        overviews (what the COG copy reads)."""
        levels = [level.path for level in self.levels]
        vrt.write_text(pyramid_vrt(self.profile, full, levels, self.tags))
        return vrt

"""Reading scenes for prediction: bands matched by name, normalised tiles, sanity checks.

Only rasterio and numpy are needed here, so ``eofm predict`` checks every input (that it
opens, has the model's bands, and holds values like the training data) in well under a
second, before the model is loaded or anything is written.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eofm.errors import EofmError

log = logging.getLogger(__name__)

#: A scene is sampled with a grid of this many windows per side, of this many pixels,
#: from corner to corner: the first and last blocks of a truncated file fail at once,
#: and the values show whether the scene is like the training data.
SAMPLE_GRID = 8
SAMPLE_WINDOW = 32
#: A band is "far outside" the training data when its median lies more than this many
#: training spreads (interquartile ranges, p75 - p25) beyond the training's 1st..99th
#: percentiles. Half an IQR keeps every held-out Sen1Floods11 chip of ../shared/data
#: inside, and puts a linear-power chip (median 0.07, 0.02) 2 and 4.6 IQRs out.
RANGE_TOLERANCE = 0.5
#: A band whose training values are all positive is compared on a log scale: a scene
#: whose median lies more than this factor below p1 or above p99 is far outside (an
#: 8-bit preview, median 54..89, against reflectance x10000, 554..2616).
RATIO_TOLERANCE = 2.0
#: Old model.json files record p1/p99 only; their IQR is estimated as this share of the
#: p1..p99 span (a normal distribution's, 1.35 sigma / 4.65 sigma).
IQR_PER_SPAN = 0.29


def match_bands(
    path: Path,
    descriptions: Sequence[str | None],
    count: int,
    model_bands: Sequence[str],
    given: Sequence[str] | None,
) -> list[int]:
    """1-based file band indexes that feed the model's bands, matched by name.

    Names come from ``--bands`` (the file's bands, in file order), else the file's band
    descriptions; a file without names is matched by count when that is unambiguous.
    """
    from eofm.bands import check_band_names

    if given:
        names = check_band_names(given, where="--bands")
        if len(names) != count:
            raise EofmError(f"--bands names {len(names)} bands but {path} has {count}.")
    elif descriptions and all(descriptions):
        try:
            names = check_band_names(
                [str(d) for d in descriptions], where=f"the band descriptions of {path}"
            )
        except EofmError:
            raise EofmError(
                f"The bands of {path} are named {[str(d) for d in descriptions]}, which are not "
                f"the model's bands {list(model_bands)} nor other known band names; map them "
                f"with --bands (the file's bands in file order, e.g. --bands {','.join(model_bands)})."
            ) from None
    else:
        names = []
    if names:
        missing = [b for b in model_bands if b not in names]
        if missing:
            raise EofmError(
                f"{path} lacks band(s) {missing}: the model needs {list(model_bands)}, the file has {names}."
            )
        return [names.index(b) + 1 for b in model_bands]
    if count == len(model_bands):
        log.info(
            "%s has no band names; using its %d bands in order as %s.",
            path,
            count,
            list(model_bands),
        )
        return list(range(1, count + 1))
    raise EofmError(
        f"Cannot match the bands of {path}: the model needs {list(model_bands)} "
        f"({len(model_bands)} bands), the file has {count} unnamed bands. Name them with --bands."
    )


class SceneReader:
    """Reads normalised tiles of one scene, strip by strip, in a background thread."""

    def __init__(
        self, path: Path, indexes: list[int], mean: Sequence[float], std: Sequence[float], tile: int
    ) -> None:
        self.path = path
        import rasterio

        self.ds = rasterio.open(path)
        self.indexes = indexes
        self.mean_values, self.std_values = list(mean), list(std)
        self.mean = np.asarray(mean, np.float32)[:, None, None]
        self.std = np.asarray(std, np.float32)[:, None, None]
        self.tile = tile
        self.nodata = self.ds.nodata
        self.float32 = all(self.ds.dtypes[i - 1] == "float32" for i in indexes)
        # an alpha band or an internal/external mask also marks pixels outside the data
        flags = {flag.name for flag in self.ds.mask_flag_enums[0]} if self.ds.count else set()
        self.has_mask = bool(flags & {"per_dataset", "alpha"}) and "nodata" not in flags

    def reopen(self) -> SceneReader:
        """Another reader of the same scene with its own dataset handle (one per thread)."""
        return SceneReader(self.path, self.indexes, self.mean_values, self.std_values, self.tile)

    def strip_shape(self, left: int, right: int) -> tuple[int, int, int]:
        """``(C, tile, W)`` of the strips ``read_strip`` reads between these columns."""
        return len(self.indexes), self.tile, max(min(right, self.ds.width) - left, self.tile)

    def strip_buffers(self, left: int, right: int) -> tuple[np.ndarray, np.ndarray]:
        """Zeroed ``(C, tile, W)`` data and ``(tile, W)`` mask buffers for ``read_strip``."""
        shape = self.strip_shape(left, right)
        return np.zeros(shape, np.float32), np.zeros(shape[1:], bool)

    def read_strip(
        self, row: int, left: int, right: int, out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``row .. row + tile`` of columns ``left .. right``, normalised, in one read.

        Zero-padded past the scene's edges to ``tile`` rows and at least ``tile`` columns;
        returns the data ``(C, tile, W)`` and its validity mask ``(tile, W)``, in ``out``
        (from ``strip_buffers``, reused strip after strip) when given.
        """
        from rasterio.windows import Window

        t = self.tile
        h, w = min(t, self.ds.height - row), min(right, self.ds.width) - left
        if out is None:
            strip, mask = self.strip_buffers(left, right)
        else:
            strip, mask = out
            strip[:, h:], strip[:, :, w:], mask[h:], mask[:, w:] = 0.0, 0.0, False, False
        window = Window(left, row, w, h)
        view = strip[:, :h, :w]
        try:
            if self.float32:  # read straight into the strip: no conversion, no copy
                self.ds.read(self.indexes, window=window, out=view)
                raw = view
            else:
                raw = self.ds.read(self.indexes, window=window)
                view[...] = raw
        except Exception as exc:
            raise EofmError(f"Cannot read {self.path} at row {row}, col {left}: {exc}") from None
        valid = mask[:h, :w]  # computed in place, band by band (contiguous planes)
        np.isfinite(view[0], out=valid)
        for band in view[1:]:
            valid &= np.isfinite(band)
        if self.nodata is not None and not math.isnan(self.nodata):
            for band in raw:
                valid &= band != self.nodata
        if self.has_mask:
            valid &= self.ds.read_masks(self.indexes[0], window=window) > 0
        view -= self.mean  # in place, the same float32 operations as (x - mean) / std
        view /= self.std
        invalid = ~valid
        if invalid.any():
            np.copyto(view, np.float32(0.0), where=invalid)
        return strip, mask

    def read(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """A ``tile x tile`` window (zero-padded past the edges) and its validity mask."""
        return self.read_strip(row, col, col + self.tile)

    def close(self) -> None:
        self.ds.close()


@dataclass
class SceneInfo:
    """What predict needs to know about a scene before it reads a tile."""

    path: Path
    indexes: list[int]
    height: int
    width: int


def inspect_scene(
    source: Path,
    model_bands: Sequence[str],
    given: Sequence[str] | None,
    *,
    input_range: dict | None = None,
    strict: bool = False,
    sample: bool = True,
) -> SceneInfo:
    """Open a scene, match its bands, read a sample of its values spread over the whole
    scene (``sample``: a broken file fails here, before any output is made) and compare
    them with the training data's ``input_range``, when given."""
    import rasterio

    try:
        with rasterio.open(source) as ds:
            descriptions, count, crs = ds.descriptions, ds.count, ds.crs
            height, width, dtypes = ds.height, ds.width, ds.dtypes
            indexes = match_bands(source, descriptions, count, model_bands, given)
            values = read_sample(ds, indexes) if sample or input_range else None
    except EofmError:
        raise
    except Exception as exc:
        raise EofmError(
            f"Cannot read raster {source}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    if crs is None:
        log.warning("%s has no CRS: the prediction is written without georeferencing.", source)
    if input_range:
        check_input_range(
            source,
            [dtypes[i - 1] for i in indexes],
            values,
            model_bands,
            input_range,
            strict=strict,
        )
    return SceneInfo(Path(source), indexes, height, width)


def read_sample(ds: Any, indexes: list[int]) -> np.ma.MaskedArray:
    """``(C, N)`` values of a grid of small windows spread over the whole scene."""
    from rasterio.windows import Window

    size = min(SAMPLE_WINDOW, ds.height, ds.width)
    rows = np.unique(np.linspace(0, ds.height - size, SAMPLE_GRID).astype(int))
    cols = np.unique(np.linspace(0, ds.width - size, SAMPLE_GRID).astype(int))
    parts = [
        ds.read(indexes, window=Window(int(c), int(r), size, size), masked=True).reshape(
            len(indexes), -1
        )
        for r in rows
        for c in cols
    ]
    return np.ma.concatenate(parts, axis=1)


def check_input_range(
    source: Path,
    dtypes: Sequence[str],
    sample: Any,
    bands: Sequence[str],
    expected: dict,
    *,
    strict: bool,
) -> None:
    """Warn loudly (or, ``strict``, refuse) when a scene is unlike the training data.

    ``expected`` is the ``input_range`` of ``model.json``: the training data's dtype and
    per-band 1st/99th percentiles, and (runs fitted since issue 34) quartiles. A scene
    differs when its dtype kind (integer vs float) differs, or when a band's median lies
    far outside the training range (``expected_bounds``): the usual signs of other units
    (dB vs linear, scaled integers, 8-bit previews) or another product level. The median
    and the interquartile range are robust statistics (Hampel et al., *Robust
    Statistics*, 1986): one flooded or cloudy corner does not move them.
    """
    problems = []
    trained_kind = np.dtype(expected["dtype"]).kind
    kinds = {np.dtype(d).kind for d in dtypes}
    if any((k in "iu") != (trained_kind in "iu") for k in kinds):
        problems.append(f"its data type is {dtypes[0]}, the training data was {expected['dtype']}")
    values = np.ma.filled(sample.astype(np.float64), np.nan).reshape(len(bands), -1)
    for i, (band, row) in enumerate(zip(bands, values, strict=True)):
        finite = row[np.isfinite(row)]
        lo, hi = float(expected["p01"][i]), float(expected["p99"][i])
        if not finite.size or not (math.isfinite(lo) and math.isfinite(hi)):
            continue
        median = float(np.median(finite))
        low, high = expected_bounds(lo, hi, _iqr(expected, i))
        if not low <= median <= high:
            problems.append(
                f"band {band} has median {median:.4g}, the training data spanned "
                f"{lo:.4g}..{hi:.4g} (1st..99th percentile"
                + (f", median {expected['p50'][i]:.4g}" if "p50" in expected else "")
                + ")"
            )
    if not problems:
        return
    message = (
        f"{source} does not look like the data the model was trained on: "
        + "; ".join(problems)
        + ". Check its units and scaling (e.g. dB vs linear, reflectance x10000)."
    )
    if strict:
        raise EofmError(message + " (--strict refuses it.)")
    log.warning("!" * 78)
    log.warning("!! %s", message)
    log.warning("!! Predictions on it are unlikely to be meaningful; --strict refuses such scenes.")
    log.warning("!" * 78)


def _iqr(expected: dict, band: int) -> float:
    """The training data's interquartile range of ``band`` (estimated for old runs)."""
    if "p25" in expected and "p75" in expected:
        iqr = float(expected["p75"][band]) - float(expected["p25"][band])
        if math.isfinite(iqr):
            return iqr
    return IQR_PER_SPAN * (float(expected["p99"][band]) - float(expected["p01"][band]))


def expected_bounds(lo: float, hi: float, iqr: float) -> tuple[float, float]:
    """The values a scene band's median may take, given the training band's 1st and 99th
    percentiles ``lo``, ``hi`` and its interquartile range ``iqr``.

    All-positive training data is compared on a log scale (``RATIO_TOLERANCE``), so an
    8-bit preview of reflectances is caught; otherwise the range is widened by
    ``RANGE_TOLERANCE`` IQRs, never across zero when the training data kept one sign
    (dB values are negative; their linear powers are positive).
    """
    if lo > 0:
        return lo / RATIO_TOLERANCE, hi * RATIO_TOLERANCE
    margin = RANGE_TOLERANCE * max(iqr, 1e-6 * max(abs(lo), abs(hi), 1.0))
    low, high = lo - margin, hi + margin
    if lo >= 0:
        low = max(low, 0.0)
    if hi < 0:
        high = min(high, 0.0)
    return low, high


def check_gsd_option(model_spec: str, options: Any, needs_gsd: bool) -> None:
    """``--gsd`` only for a model that reads each input's GSD (Scale-MAE with
    ``backbone.gsd: null``); any other model would silently ignore it."""
    if options.gsd_m is not None and not needs_gsd:
        raise EofmError(
            f"--gsd: {model_spec} does not take the inputs' ground sample distance (only "
            "Scale-MAE runs fitted with backbone.gsd: null do); leave --gsd out.",
            exit_code=2,
        )


def check_scene_gsd(scene: Path) -> None:
    """A Scale-MAE model needs each scene's metres per pixel: a raster without a CRS
    cannot give it, so it is refused here, before the model loads, naming ``--gsd``."""
    from eofm.data.coords import metres_per_pixel

    try:
        metres_per_pixel(scene)
    except EofmError:
        raise EofmError(
            f"{scene} has no CRS, so its ground sample distance in metres is unknown and "
            "this Scale-MAE model needs it; give it with --gsd METRES (e.g. --gsd 10 for "
            "Sentinel-2's 10 m bands)."
        ) from None

"""Track A samples drawn from the Mesogeos cube as the release's notebooks draw them.

Orion-AI-Lab/mesogeos, ``ml_tracks/a.fire_danger/dataset-extraction/``:

``sample_positives.ipynb``
    fires of ``AREA_HA >= 30`` whose ignition point lies in the Mediterranean biome
    (``BIOME_NUM == 12`` and ``REALM == 'Palearctic'``), dated one day before ignition
    (the cube day t, :data:`eofm.data.mesogeos_cube.IGNITION_OFFSET_DAYS`); the window is
    ``t-29 .. t``; a fire whose 125 x 125 px patch leaves the grid is skipped (``x - 62 < 0
    or x + 63 >= W``, the same in y), and a sample whose first window day has no ``t2m``
    is dropped. From the cube, a positive is a cell with ``ignition_points[t] >= 30``.

``sample_negatives.ipynb``
    ``2 x`` the positives of each year (by the year of t), spread per day: 5% over
    January-February (``(n // 20) / 60`` a day), 90% over March-October
    (``(9n // 10) / 240``), 5% over November-December; the cube's first, partial year
    (2006, from April) gets none in January-February, ``(9.5n // 10) / 210`` a day in
    March-October and ``(n // 40) / 60`` in November-December, and its last, partial year
    (2022, to September) the mirror. A day's count is the integer part of its rate plus
    one with the probability of the fractional part. Cells are drawn with weights by land
    cover (the argmax of the eight ``lc_*`` on 2021-01-01): a class's weight is the share
    of positives in it over its number of cells, 0 for classes with fewer than 50
    positives and for water bodies and wetland; a draw is redrawn while its 125 px patch
    leaves the grid, holds a burned pixel (``burned_areas == 1``) that day, its cell
    centre is outside the biome, or its ``t2m`` that day is NaN.

Draws use one seeded generator (the notebooks use the unseeded global ones).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from eofm.data.mesogeos_cube import LANDCOVER, MesogeosCube
from eofm.errors import EofmError

log = logging.getLogger(__name__)

#: Land-cover classes that cannot burn (indices in :data:`LANDCOVER`: water bodies, wetland).
UNBURNABLE = (6, 7)


@dataclass
class SampleRows:
    """Where samples are: ``rows (N, 3)`` = (cube day t, y, x), labels and fire hectares."""

    rows: np.ndarray
    label: np.ndarray
    hectares: np.ndarray


def region_mask(cube: MesogeosCube, mask: str, attributes: dict[str, Any]) -> np.ndarray:
    """``(H, W)`` bool: cell centres inside the biome/region (all True without a mask).

    ``mask`` names a cube layer (non-zero inside) or a vector file, whose features are
    kept where their attributes equal ``attributes``, reprojected to EPSG:4326 and burnt
    in by cell centre (the notebooks' ``point.within(biome)``).
    """
    if not mask:
        return np.ones((cube.height, cube.width), bool)
    if cube.name(mask) in cube.ds:
        return np.nan_to_num(cube.static(mask)) != 0
    import geopandas as gpd
    from rasterio.features import geometry_mask
    from rasterio.transform import from_origin

    try:
        shapes = gpd.read_file(mask)
    except Exception as exc:
        raise EofmError(
            f"data.mask {mask} is neither a layer of the cube nor a readable vector file: {exc}"
        ) from None
    for key, value in attributes.items():
        if key not in shapes.columns:
            raise EofmError(f"data.mask_filter: {mask} has no attribute '{key}'.")
        shapes = shapes[shapes[key] == value]
    if not len(shapes):
        raise EofmError(f"data.mask {mask} keeps no feature (data.mask_filter {attributes}).")
    if shapes.crs is not None:
        shapes = shapes.to_crs(4326)
    x, y = cube.ds["x"].values, cube.ds["y"].values
    dx, dy = float(x[1] - x[0]), float(y[0] - y[1])
    transform = from_origin(float(x[0]) - dx / 2, float(y[0]) + dy / 2, dx, dy)
    return geometry_mask(list(shapes.geometry), (cube.height, cube.width), transform, invert=True)


def border_ok(height: int, width: int, patch: int) -> np.ndarray:
    """``(H, W)`` bool: the notebooks' border rule for a ``patch`` px square."""
    half = patch // 2
    ys, xs = np.arange(height), np.arange(width)
    rows = (ys - half >= 0) & (ys + half + 1 < height)
    cols = (xs - half >= 0) & (xs + half + 1 < width)
    return rows[:, None] & cols[None, :]


def positive_rows(
    cube: MesogeosCube, min_ha: float, lag: int, patch: int, inside: np.ndarray
) -> SampleRows:
    """Cells with ``ignition_points[t] >= min_ha`` (t the cube day of the ignition), in the
    region, away from the border, with ``lag`` days of history and ``t2m`` on day t-lag+1."""
    block = cube.days_per_read()
    found = []
    for start in range(0, len(cube.times), block):
        values = cube.days("ignition_points", start, min(start + block, len(cube.times)))
        hits = np.argwhere((values >= min_ha) & (values > 0))  # NaN compares False
        hectares = values[hits[:, 0], hits[:, 1], hits[:, 2]]
        hits[:, 0] += start
        found.append((hits, hectares))
    rows = np.concatenate([f[0] for f in found])
    hectares = np.concatenate([f[1] for f in found])
    keep = (rows[:, 0] >= lag - 1) & (border_ok(cube.height, cube.width, patch) & inside)[
        rows[:, 1], rows[:, 2]
    ]
    rows, hectares = rows[keep], hectares[keep]
    first_day = rows.copy()
    first_day[:, 0] -= lag - 1
    t2m, _ = cube.gather(first_day, 1, ["t2m"], [])
    keep = np.isfinite(t2m[:, 0, 0])
    return SampleRows(rows[keep], np.ones(int(keep.sum()), np.float32), hectares[keep])


def landcover_weights(
    cube: MesogeosCube, positive_cover: np.ndarray, min_fires: int, date: str
) -> np.ndarray:
    """``(H * W,)`` probabilities of drawing each cell (``sample_negatives.ipynb``)."""
    day = cube.day_index(np.datetime64(date)) if date else None
    if day is None or day not in cube.annual_days:
        day = int(cube.annual_days[-1])
        log.info(
            "Land cover of %s weights the negatives (%s is not in the cube).", cube.times[day], date
        )
    cover = np.stack([cube.static(name, day) for name in LANDCOVER])
    classes = np.argmax(cover, axis=0).ravel()  # NaN cells: numpy's argmax (first NaN)
    burned = np.argmax(positive_cover, axis=1)
    cells = np.bincount(classes, minlength=len(LANDCOVER))
    fires = np.bincount(burned, minlength=len(LANDCOVER))
    keep = (fires >= min_fires) & (cells > 0)
    keep[list(UNBURNABLE)] = False
    total = fires[keep].sum()
    if not total:
        raise EofmError(
            f"No land-cover class holds {min_fires} positives in {cube.root} (counts by class: "
            f"{dict(zip(LANDCOVER, fires.tolist(), strict=True))}); lower data.min_class_fires."
        )
    weight = np.where(keep, fires / np.maximum(cells * total, 1), 0.0)
    p = weight[classes]
    return p / p.sum()


def daily_rates(
    positives_per_year: dict[int, int],
    ratio: float,
    first_partial: int | None,
    last_partial: int | None,
) -> dict[int, dict[str, float]]:
    """Negatives per day by year and season (JF, MS = March-October, ND)."""
    rates = {}
    for year, count in positives_per_year.items():
        n = int(round(ratio * count))
        if year == first_partial or year == last_partial:
            rates[year] = {
                "JF": 0.0 if year == first_partial else (n // 40) / 60,
                "MS": (9.5 * n // 10) / 210,
                "ND": 0.0 if year == last_partial else (n // 40) / 60,
            }
        else:
            rates[year] = {"JF": (n // 20) / 60, "MS": (9 * n // 10) / 240, "ND": (n // 20) / 60}
    return rates


def _season(month: int) -> str:
    return "JF" if month <= 2 else "MS" if month <= 10 else "ND"


def track_a_negatives(
    cube: MesogeosCube,
    positives: SampleRows,
    positive_cover: np.ndarray,
    *,
    ratio: float,
    lag: int,
    patch: int,
    inside: np.ndarray,
    min_fires: int,
    landcover_date: str,
    seed: int,
    tries: int = 200,
) -> SampleRows:
    """Negatives of ``sample_negatives.ipynb`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    p = landcover_weights(cube, positive_cover, min_fires, landcover_date)
    cdf = np.cumsum(p)  # drawn by inverse CDF: one pass over the grid, not one per draw
    years = cube.times.astype("datetime64[Y]").astype(int) + 1970
    months = cube.times.astype("datetime64[M]").astype(int) % 12 + 1
    pos_years, pos_counts = np.unique(years[positives.rows[:, 0]], return_counts=True)
    first, last = cube.times[0], cube.times[-1]
    first_partial = int(years[0]) if (months[0], first.astype(object).day) != (1, 1) else None
    last_partial = int(years[-1]) if (months[-1], last.astype(object).day) != (12, 31) else None
    rates = daily_rates(
        dict(zip(pos_years.tolist(), pos_counts.tolist(), strict=True)), ratio,
        first_partial, last_partial,
    )  # fmt: skip
    wanted: list[tuple[int, int]] = []
    for t in range(lag, len(cube.times)):
        rate = rates.get(int(years[t]), {}).get(_season(int(months[t])), 0.0)
        count, fraction = divmod(rate, 1)
        count += rng.uniform(0, 1) < fraction
        if count:
            wanted.append((t, int(count)))
    allowed = (border_ok(cube.height, cube.width, patch) & inside).ravel()
    half = patch // 2
    rows: list[tuple[int, int, int]] = []
    block = max(1, cube.days_per_read() // 2)
    for start in range(0, len(wanted), block):
        part = wanted[start : start + block]
        first_t, stop_t = part[0][0], part[-1][0] + 1
        t2m = cube.days("t2m", first_t, stop_t)
        burned = cube.days("burned_areas", first_t, stop_t)
        for t, count in part:
            fires = _summed_area(burned[t - first_t] == 1)
            warm = np.isfinite(t2m[t - first_t]).ravel()
            found = 0
            for _ in range(tries):
                draws = rng.uniform(0, cdf[-1], max(4 * count, 16))
                cells = np.minimum(np.searchsorted(cdf, draws, side="right"), p.size - 1)
                y, x = np.divmod(cells, cube.width)
                ok = allowed[cells] & warm[cells]
                ok &= _patch_sum(fires, y, x, half) == 0
                for cell_y, cell_x in zip(
                    y[ok][: count - found], x[ok][: count - found], strict=True
                ):
                    rows.append((t, int(cell_y), int(cell_x)))
                found = min(count, found + int(ok.sum()))
                if found == count:
                    break
            if found < count:
                log.warning("Day %s: no cell fits a negative (of %d).", cube.times[t], count)
    array = np.asarray(rows, np.int64).reshape(-1, 3)
    return SampleRows(array, np.zeros(len(array), np.float32), np.zeros(len(array), np.float32))


def _summed_area(mask: np.ndarray) -> np.ndarray:
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    table[1:, 1:] = mask.cumsum(0).cumsum(1)
    return table


def _patch_sum(table: np.ndarray, y: np.ndarray, x: np.ndarray, half: int) -> np.ndarray:
    h, w = table.shape[0] - 1, table.shape[1] - 1
    y0, y1 = np.clip(y - half, 0, h), np.clip(y + half + 1, 0, h)
    x0, x1 = np.clip(x - half, 0, w), np.clip(x + half + 1, 0, w)
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def uniform_negatives(
    cube: MesogeosCube,
    positives: SampleRows,
    *,
    ratio: float,
    lag: int,
    box: tuple[int, int, int],
    seed: int,
) -> SampleRows:
    """The simpler strategies: uniform over days and cells (sea included), away from every
    positive by ``box`` half-widths (days, rows, columns; ``(0, 0, 0)``: random)."""
    from eofm.data.firecube import draw_negatives

    count = int(round(ratio * len(positives.rows)))
    rows = draw_negatives(
        positives.rows, count, low=(lag - 1, 0, 0),
        high=(len(cube.times), cube.height, cube.width), box=box, seed=seed,
    )  # fmt: skip
    return SampleRows(rows, np.zeros(len(rows), np.float32), np.zeros(len(rows), np.float32))

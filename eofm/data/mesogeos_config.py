"""The ``data`` keys of the Mesogeos release (``data.name: mesogeos``); see ``mesogeos.py``.

Defaults are Track A of Orion-AI-Lab/mesogeos (``ml_tracks/a.fire_danger``): the 12 dynamic
and 12 static inputs of ``configs/config_lstm/config_train.json``, 30-day windows, fires of
30 ha or more, two negatives per positive, and the splits of ``datasets/dataset.py``
(train 2006-2019, val 2020, test 2021-2022).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from eofm.data.config import DataConfig
from eofm.errors import RecipeError
from eofm.typed_config import check_positive, option

#: Track A's dynamic inputs (``configs/*/config_train.json``, ``features.dynamic``).
TRACK_A_DYNAMIC = [
    "d2m", "lai", "lst_day", "lst_night", "ndvi", "rh", "smi", "sp", "ssrd", "t2m", "tp",
    "wind_speed",
]  # fmt: skip
#: Track A's static inputs (``features.static``): no aspect or curvature.
TRACK_A_STATIC = [
    "dem", "roads_distance", "slope", "lc_agriculture", "lc_forest", "lc_grassland",
    "lc_settlement", "lc_shrubland", "lc_sparse_vegetation", "lc_water_bodies", "lc_wetland",
    "population",
]  # fmt: skip
#: The release's split years (``datasets/dataset.py``: val 2020, test 2021 and 2022).
TRACK_A_SPLITS = {"train": list(range(2006, 2020)), "val": [2020], "test": [2021, 2022]}


@dataclass
class MesogeosConfig(DataConfig):
    """The Mesogeos cube (``mesogeos_cube.zarr``) or the released Track A samples (a folder
    with ``positives.csv`` and ``negatives.csv``) as ``data.root``."""

    dynamic_vars: list[str] = option(
        help="daily inputs (Track A's 12)", factory=lambda: list(TRACK_A_DYNAMIC)
    )
    static_vars: list[str] = option(
        help="static inputs (Track A's 12; population and lc_* are annual layers)",
        factory=lambda: list(TRACK_A_STATIC),
    )
    variables: dict[str, str] = option(
        help="our name -> the cube's name, for cubes that name layers otherwise (FireCube)",
        factory=dict,
    )
    lag_days: int = option(30, "days per window: t-L+1 .. t, t the cube day of the ignition")
    min_burned_ha: float = option(30.0, "positives: fires of at least this many hectares")
    sampling: Literal["track_a", "random", "buffer"] = option(
        "track_a",
        "track_a (the release's negatives), random (uniform days and cells), or buffer "
        "(uniform, outside a space-time box around every positive)",
    )
    negative_ratio: float = option(2.0, "negatives per positive (per year, then per split)")
    exclusion_px: int = option(
        125, "track_a: no burned pixel in this square patch that day; also the border rule"
    )
    min_class_fires: int = option(
        50, "track_a: land-cover classes with fewer positives get no negatives"
    )
    landcover_date: str = option(
        "2021-01-01", "track_a: the annual land cover that weights negatives (else the last)"
    )
    buffer_pixels: int = option(2, "buffer: half-width of the spatial box")
    buffer_days: int = option(3, "buffer: half-width of the temporal box")
    mask: str = option(
        "",
        "biome/region mask: a vector file (GeoJSON, GeoPackage, shapefile) or the name of a "
        "cube layer (non-zero inside); empty: the whole grid",
    )
    mask_filter: dict[str, Any] = option(
        help="vector mask: keep features whose attributes equal these "
        "(Track A: {BIOME_NUM: 12, REALM: Palearctic})",
        factory=dict,
    )
    split_years: dict[str, list[int]] = option(
        help="train/val/test -> years of the window's last day",
        factory=lambda: {k: list(v) for k, v in TRACK_A_SPLITS.items()},
    )
    read_budget_mb: int = option(
        512, "memory one read of the cube, or a danger map's staged window and band, may hold"
    )

    #: The label is an ignition; a sample is one pixel.
    target: ClassVar[str] = "ignition_points"
    patch: ClassVar[int] = 1
    path_keys: ClassVar[tuple[str, ...]] = ("root", "mask")

    def validate(self, where: str) -> None:
        super().validate(where)
        check_positive(self, where, "data.lag_days", "data.negative_ratio", "data.exclusion_px")
        check_positive(self, where, "data.read_budget_mb")
        check_positive(
            self, where, "data.buffer_pixels", "data.buffer_days", "data.min_class_fires",
            "data.min_burned_ha", allow_zero=True,
        )  # fmt: skip
        if self.exclusion_px % 2 == 0:
            raise RecipeError(f"data.exclusion_px in {where} must be odd, got {self.exclusion_px}.")
        if set(self.split_years) != {"train", "val", "test"}:
            raise RecipeError(f"data.split_years in {where} needs exactly train, val and test.")
        seen: dict[int, str] = {}
        for split, years in self.split_years.items():
            for year in years:
                if year in seen:
                    raise RecipeError(
                        f"data.split_years in {where} puts {year} in both {seen[year]} and {split}."
                    )
                seen[year] = split
        if self.mask_filter and not self.mask:
            raise RecipeError(f"data.mask_filter in {where} needs data.mask (a vector file).")

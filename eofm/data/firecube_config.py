"""The ``data`` keys of a fire-danger datacube (``data.name: firecube``); see ``firecube.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from eofm.data.config import DataConfig, check_splits_filled
from eofm.errors import RecipeError
from eofm.typed_config import check_positive, option

#: Mesogeos' daily dynamic and static variables (Kondylatos et al., NeurIPS 2023 D&B).
MESOGEOS_DYNAMIC = [
    "d2m", "lai", "lst_day", "lst_night", "ndvi", "rh", "smi", "sp", "ssrd", "t2m", "tp",
    "wind_speed",
]  # fmt: skip
MESOGEOS_STATIC = [
    "dem", "slope", "aspect", "curvature", "roads_distance", "population",
    "lc_agriculture", "lc_forest", "lc_grassland", "lc_settlement", "lc_shrubland",
    "lc_sparse_vegetation", "lc_water_bodies", "lc_wetland",
]  # fmt: skip


def check_date_ranges(ranges: dict[str, list[str]], where: str) -> None:
    """train/val/test each ``[first, last]`` ISO dates, in order, and no day in two."""
    import datetime

    if set(ranges) != {"train", "val", "test"}:
        raise RecipeError(f"data.split_dates in {where} needs exactly train, val and test.")
    spans = []
    for split, span in ranges.items():
        try:
            first, last = (datetime.date.fromisoformat(str(d)) for d in span)
        except (TypeError, ValueError):
            raise RecipeError(
                f"data.split_dates.{split} in {where} must be [YYYY-MM-DD, YYYY-MM-DD], got {span}."
            ) from None
        if last < first:
            raise RecipeError(f"data.split_dates.{split} in {where} ends before it starts.")
        spans.append((first, last, split))
    spans.sort()
    for (_, last, a), (first, _, b) in zip(spans, spans[1:], strict=False):
        if first <= last:
            raise RecipeError(f"data.split_dates {a} and {b} in {where} share days.")


def check_years(years: dict[str, list[int]], where: str) -> None:
    """train/val/test each a list of years, and no year in two (a sample of a shared year
    would both train and score)."""
    if set(years) != {"train", "val", "test"}:
        raise RecipeError(f"data.split_years in {where} needs exactly train, val and test.")
    seen: dict[int, str] = {}
    for split in ("train", "val", "test"):
        for year in years[split] or []:
            if year in seen:
                raise RecipeError(
                    f"data.split_years in {where} lists {year} in both {seen[year]} and "
                    f"{split}; a year belongs to one split."
                )
            seen[year] = split


@dataclass
class FireCubeConfig(DataConfig):
    """A zarr datacube with dims (time, y, x): daily dynamic layers, static layers, and
    ``ignition_points`` / ``burned_areas`` targets."""

    dynamic_vars: list[str] = option(
        help="daily input variables", factory=lambda: list(MESOGEOS_DYNAMIC)
    )
    static_vars: list[str] = option(
        help="static input variables", factory=lambda: list(MESOGEOS_STATIC)
    )
    target: Literal["ignition_points", "burned_areas"] = option(
        "ignition_points", "the label at t+1: an ignition, or a burned pixel"
    )
    min_burned_ha: float = option(
        0.0, "ignition_points: burned hectares above which a day counts (Mesogeos track A: 30)"
    )
    lag_days: int = option(10, "days of dynamic variables per sample (t-L+1 .. t)")
    patch: int = option(1, "pixels per side of a sample (odd; 1 = the pixel itself)")
    negative_ratio: float = option(2.0, "negatives drawn per positive")
    negative_strategy: Literal["random", "buffer"] = option(
        "buffer", "random, or only outside a space-time buffer around every positive"
    )
    buffer_pixels: int = option(2, "buffer strategy: half-width of the spatial buffer")
    buffer_days: int = option(3, "buffer strategy: half-width of the temporal buffer")
    split_years: dict[str, list[int]] | None = option(
        None, "train/val/test -> years of the label day (default: last year test, one before val)"
    )
    split_dates: dict[str, list[str]] | None = option(
        None, "train/val/test -> [first, last] label dates (inclusive), instead of split_years"
    )
    split: dict[str, Any] | None = option(
        None,
        "hold out regions (instead of years): {by: region|country|continent|latitude_band, "
        "test: [..], val: [..], regions: FILE, column: NAME, overlap: first|drop}; samples go "
        "by their pixel (one inside two overlapping regions is refused unless overlap is set)",
    )
    weather_run: str = option(
        "", "a weather run (run dir or hf://) whose view of each day joins the dynamic inputs"
    )
    weather_root: str = option(
        "", "ERA5-layout data covering the cube's days for weather_run (default: its data.root)"
    )
    weather_features: Literal["outputs", "latent"] = option(
        "outputs", "weather_run's decoded variables, or its latent's surface level"
    )

    path_keys: ClassVar[tuple[str, ...]] = ("root", "weather_run", "weather_root")

    def validate(self, where: str) -> None:
        super().validate(where)
        check_positive(self, where, "data.lag_days", "data.patch", "data.negative_ratio")
        check_positive(self, where, "data.buffer_pixels", "data.buffer_days", allow_zero=True)
        if self.patch % 2 == 0:
            raise RecipeError(f"data.patch in {where} must be odd, got {self.patch}.")
        if self.split_years is not None:
            check_years(self.split_years, where)
        from eofm.data.regions import parse_region_split

        parse_region_split(self.split, where)
        if self.split and (self.split_dates or self.split_years):
            raise RecipeError(
                f"Give data.split (regions) or data.split_years / split_dates in {where}, not both."
            )
        if self.split_dates is not None:
            check_date_ranges(self.split_dates, where)
            if self.split_years is not None:
                raise RecipeError(
                    f"Give data.split_years or data.split_dates in {where}, not both."
                )

    def check_files(self, where: str) -> None:
        """The cube's variables and time axis (metadata only): the inputs and target it
        must hold, and train and val days in it."""
        super().check_files(where)
        import numpy as np

        from eofm.data.cube_metadata import read_cube_metadata
        from eofm.data.regions import check_regions_file, parse_region_split

        split = parse_region_split(self.split, where)
        if split is not None:
            check_regions_file(split, where)
        meta = read_cube_metadata(Path(self.root), f"data.root in {where}")
        if meta is None:
            return
        for kind, key, names in (
            ("target layer", "target", [self.target]),
            ("dynamic variable", "dynamic_vars", self.dynamic_vars),
            ("static variable", "static_vars", self.static_vars),
        ):
            for name in names:
                if name not in meta.variables:
                    raise RecipeError(
                        f"Datacube {self.root} has no {kind} '{name}' (data.{key} in {where})."
                    )
        if meta.days is None or self.split:
            return
        # a sample's label day is its cube day + 1 (Mesogeos writes day D's fire at D-1)
        labels = np.unique(np.concatenate([meta.days, meta.days + np.timedelta64(1, "D")]))
        years = labels.astype("datetime64[Y]").astype(int) + 1970
        if self.split_dates is not None:
            splits = {
                name: labels[
                    (labels >= np.datetime64(str(first))) & (labels <= np.datetime64(str(last)))
                ]
                for name, (first, last) in self.split_dates.items()
            }
            how = f"data.split_dates {self.split_dates}"
        elif self.split_years is not None:
            splits = {
                name: labels[np.isin(years, [int(y) for y in chosen])]
                for name, chosen in self.split_years.items()
            }
            how = f"data.split_years {self.split_years}"
        else:
            return
        check_splits_filled({k: list(v) for k, v in splits.items()}, how, where)

"""The ``data`` keys of ERA5 downscaling (``data.name: era5_downscaling``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from eofm.data.config import DataConfig
from eofm.errors import RecipeError
from eofm.typed_config import check_positive, option


@dataclass
class ERA5DownscalingConfig(DataConfig):
    """Fine ERA5 fields as targets, their block means as the coarse inputs."""

    layout: Literal["auto", "netcdf", "zarr"] = option("auto", "file layout under root")
    inputs: list[str] = option(
        help="surface variables given on the coarse grid (targets need theirs here)",
        factory=lambda: ["tp", "tcw", "sp"],
    )
    factor: int = option(4, "fine cells per coarse cell along each axis (0.25 -> 1 degree: 4)")
    lat_range: list[float] | None = option(None, "[south, north] crop in degrees")
    lon_range: list[float] | None = option(None, "[west, east] crop in degrees")
    flip_latitude: bool = option(False, "the store's latitudes ascend (WeatherBench2 zarr)")
    split: dict[str, Any] | None = option(
        None,
        "geographic shift: {by: region|country|continent|latitude_band, test: [..], ...}; "
        "cells of the test/val regions are scored, the rest train (every time step); "
        "overlap: first|drop for cells inside two overlapping regions (default: refused)",
    )

    def validate(self, where: str) -> None:
        super().validate(where)
        from eofm.data.regions import parse_region_split

        check_positive(self, where, "data.factor")
        if self.factor < 2:
            raise RecipeError(f"data.factor in {where} must be at least 2, got {self.factor}.")
        if not self.inputs:
            raise RecipeError(f"data.inputs in {where} must name at least one variable.")
        parse_region_split(self.split, where)

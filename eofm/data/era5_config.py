"""The ``data`` keys of ERA5 for Aurora (``data.name: era5``); see ``era5.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eofm.data.config import DataConfig
from eofm.errors import RecipeError
from eofm.typed_config import check_positive, option


@dataclass
class ERA5Config(DataConfig):
    """ERA5 as per-variable NetCDF files or a WeatherBench2-style zarr; names are Aurora's."""

    layout: Literal["auto", "netcdf", "zarr"] = option("auto", "file layout under root")
    surf_vars: list[str] = option(
        help="surface input variables", factory=lambda: ["2t", "10u", "10v", "msl"]
    )
    atmos_vars: list[str] = option(
        help="pressure-level input variables", factory=lambda: ["z", "u", "v", "t", "q"]
    )
    static_vars: list[str] = option(
        help="static input variables", factory=lambda: ["lsm", "z", "slt"]
    )
    levels: list[float] | None = option(
        None,
        "hPa levels (default: every file level Aurora has statistics for; model-level "
        "files are interpolated to these, default the 13 standard levels 50 .. 1000)",
    )
    allow_missing: list[str] = option(help="inputs Aurora may run without", factory=list)
    history_steps: int = option(2, "input states per sample")
    step_hours: int = option(6, "hours between input states")
    lead_hours: int = option(6, "hours from the last input state to the target")
    lat_range: list[float] | None = option(None, "[south, north] crop in degrees")
    lon_range: list[float] | None = option(None, "[west, east] crop in degrees")
    flip_latitude: bool = option(False, "the store's latitudes ascend (WeatherBench2 zarr)")
    accumulated: list[str] = option(
        help="more targets summed over the lead window (tp and e always are)", factory=list
    )
    mean: list[float] | None = option(None, "per-target mean (default: training split)")
    std: list[float] | None = option(None, "per-target std (default: training split)")

    def validate(self, where: str) -> None:
        super().validate(where)
        check_positive(self, where, "data.history_steps", "data.step_hours", "data.lead_hours")
        if (self.mean is None) != (self.std is None):
            raise RecipeError(f"Give both data.mean and data.std in {where}, or neither.")

"""The ``data`` keys of MERRA-2 downscaling with Prithvi WxC (``data.name: merra2_downscaling``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from eofm.data.config import DataConfig
from eofm.errors import RecipeError
from eofm.typed_config import check_positive, option


@dataclass
class MERRA2DownscalingConfig(DataConfig):
    """MERRA-2 in Prithvi WxC's input layout (``MERRA2_sfc_YYYYMMDD.nc``,
    ``MERRA_pres_YYYYMMDD.nc``, climatology ``climate_{surface,vertical}_doyDDD_hourHH.nc``)."""

    climatology: str = option("", "folder of the climatology files (default: data.root)")
    factor: int = option(6, "fine cells per coarse cell along each axis (granite-wxc: 6)")
    input_hours: int = option(3, "hours between the two input states")
    time_range: list[str] | None = option(None, "[first, last] times to use (default: all)")

    path_keys: ClassVar[tuple[str, ...]] = ("root", "climatology")

    def validate(self, where: str) -> None:
        super().validate(where)
        check_positive(self, where, "data.factor", "data.input_hours")
        if self.factor < 2:
            raise RecipeError(f"data.factor in {where} must be at least 2, got {self.factor}.")
        if self.time_range is not None and len(self.time_range) != 2:
            raise RecipeError(f"data.time_range in {where} must be [first, last].")

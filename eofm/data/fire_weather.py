"""The Canadian Forest Fire Weather Index System, computed by xclim from weather fields.

Van Wagner, "Development and structure of the Canadian Forest Fire Weather Index System",
Canadian Forestry Service, 1987; computed with ``xclim.indices.fire.cffwis_indices``
(Ouranos), a maintained implementation: eofm writes none of the equations. The outputs
are FFMC, DMC, DC, ISI, BUI and FWI.

Inputs are daily values at local noon: temperature, relative humidity, 10 m wind speed,
and precipitation over the previous 24 h (plus snow depth where known).

Settings (:data:`GFWED_SETTINGS`) replicate NASA's Global Fire WEather Database (Field et
al., "Development of a Global Fire Weather Database", NHESS 2015), as xclim documents:

- *Start-up values*: each fire season starts from FFMC 85, DMC 6 and DC 15, the standard
  start-up values; the season starts after 3 days at or above 6 degC (and, with snow
  depth, 3 snow-free days) and ends after 3 days below it ("GFWED" season method).
- *Overwintering*: off. The DC of a new season starts from 15, not from an estimate of the
  winter's precipitation; a dry spring is handled by GFWED's own dry-start rule.
- The indices iterate in time, so a series needs a spin-up: a location whose season never
  ends (the tropics) carries the start-up values' error for months in DC (and in BUI and
  FWI through it). Seasonal locations restart each spring and match GFWED exactly.
"""

from __future__ import annotations

from typing import Any

#: xclim's options that replicate GFWED (see its cffwis_indices documentation).
GFWED_SETTINGS: dict[str, Any] = {
    "season_method": "GFWED",
    "overwintering": False,
    "dry_start": "GFWED",
    "temp_start_thresh": "6 degC",
    "temp_end_thresh": "6 degC",
    "temp_condition_days": 3,
    "snow_condition_days": 3,
    "dc_start": 15,
    "dmc_start": 6,
    "ffmc_start": 85,
    "dmc_dry_factor": 2,
}
INDICES = ("DC", "DMC", "FFMC", "ISI", "BUI", "FWI")


def fire_weather_indices(
    tas: Any, pr: Any, sfcwind: Any, hurs: Any, lat: Any, snd: Any | None = None
) -> dict[str, Any]:
    """The six indices (xarray DataArrays, same dims as the inputs) under GFWED settings.

    Inputs are xarray DataArrays with CF ``units`` (e.g. ``degC``, ``mm/day``, ``km/h``,
    ``%``, ``m``) and a daily ``time`` dimension; ``lat`` in degrees north.
    """
    import warnings

    from xclim.indices.fire import cffwis_indices

    with warnings.catch_warnings():  # xclim's notes on missing-value checks
        warnings.simplefilter("ignore", UserWarning)
        out = cffwis_indices(
            tas=tas, pr=pr, sfcWind=sfcwind, hurs=hurs, lat=lat, snd=snd, **GFWED_SETTINGS
        )
    return dict(zip(INDICES, out, strict=True))


def noon_inputs_from_era5(t2m: Any, d2m: Any, u10: Any, v10: Any, tp: Any) -> dict[str, Any]:
    """FWI inputs from ERA5 fields: relative humidity from the dew point, wind speed from its
    components (xclim's conversions), and precipitation summed over the previous 24 h.

    ``t2m``, ``d2m``, ``u10``, ``v10`` are the noon (local) fields; ``tp`` is hourly
    accumulated precipitation in metres over the 24 h that end at that noon.
    """
    from xclim.core.units import convert_units_to
    from xclim.indicators.convert import relative_humidity_from_dewpoint, wind_speed_from_vector

    hurs = relative_humidity_from_dewpoint(tas=t2m, tdps=d2m)
    speed, _ = wind_speed_from_vector(uas=u10, vas=v10)
    rain = tp.sum("time", keep_attrs=True) if "time" in tp.dims else tp
    rain = rain.assign_attrs(units="m d-1")
    return {
        "tas": convert_units_to(t2m, "degC"),
        "hurs": hurs,
        "sfcwind": convert_units_to(speed, "km/h"),
        "pr": convert_units_to(rain, "mm/d"),
    }

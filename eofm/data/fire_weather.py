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


def noon_inputs_from_era5(t2m: Any, d2m: Any, u10: Any, v10: Any, tp_24h: Any) -> dict[str, Any]:
    """FWI inputs from ERA5 fields: relative humidity from the dew point, wind speed from its
    components (xclim's conversions), and the 24 h precipitation in mm/day.

    ``t2m``, ``d2m``, ``u10``, ``v10`` are the noon (local) fields; ``tp_24h`` is the
    precipitation in metres of the 24 h that end at that noon (ERA5's ``tp`` summed over
    its steps).
    """
    from xclim.core.units import convert_units_to
    from xclim.indicators.convert import relative_humidity_from_dewpoint, wind_speed_from_vector

    hurs = relative_humidity_from_dewpoint(tas=t2m, tdps=d2m)
    speed, _ = wind_speed_from_vector(uas=u10, vas=v10)
    rain = tp_24h.assign_attrs(units="m d-1")
    return {
        "tas": convert_units_to(t2m, "degC"),
        "hurs": hurs,
        "sfcwind": convert_units_to(speed, "km/h"),
        "pr": convert_units_to(rain, "mm/d"),
    }


#: Targets an ERA5 datamodule can derive, by their lower-case names.
FIRE_TARGETS = {name.lower(): name for name in INDICES}
#: ERA5 surface variables (Aurora names) the indices are computed from.
FIRE_INPUTS = ("2t", "d2m", "10u", "10v", "tp")


def era5_fire_targets(fields: dict[str, Any], names: list[str], where: Any) -> dict[str, Any]:
    """Fire-weather targets on the ERA5 time axis, from the surface fields (by Aurora name).

    Each UTC day's indices come from its 12:00 UTC fields (noon at the prime meridian; an
    approximation of local noon east and west of it) and the precipitation of the 24 h
    that end then (``tp`` accumulates over each time step, so the steps in (noon - 24 h,
    noon] are summed; the first day sums what the record holds). Every time step of a day
    gets that day's value. Days before a fire season has started are NaN, which the loss
    and the scores leave out. Snow depth is taken as zero (GFWED's season rule also looks
    at snow; ERA5's ``sd`` is not read yet).
    """
    import numpy as np
    import xarray as xr

    from eofm.errors import EofmError

    missing = [n for n in FIRE_INPUTS if n not in fields]
    if missing:
        raise EofmError(
            f"Fire-weather targets {names} need the ERA5 surface variables {list(FIRE_INPUTS)}; "
            f"{where} lacks {missing}."
        )
    units = {"2t": "K", "d2m": "K", "10u": "m/s", "10v": "m/s", "tp": "m"}
    arrays = {n: fields[n].assign_attrs(units=units[n]) for n in FIRE_INPUTS}
    times = arrays["2t"]["time"].values
    noon = times[(times.astype("datetime64[h]") - times.astype("datetime64[D]")).astype(int) == 12]
    if len(noon) < 1:
        raise EofmError(f"{where} has no 12:00 UTC time step to compute fire weather from.")
    day = np.timedelta64(24, "h")
    rain = xr.concat(
        [arrays["tp"].sel(time=(times > n - day) & (times <= n)).sum("time") for n in noon], "time"
    ).assign_coords(time=noon)
    inputs = noon_inputs_from_era5(
        *(arrays[n].sel(time=noon) for n in ("2t", "d2m", "10u", "10v")),
        rain.assign_attrs(units="m"),
    )
    order = [d for d in inputs["tas"].dims if d != "time"] + ["time"]  # time last, lat broadcast
    inputs = {k: v.transpose(*order) for k, v in inputs.items()}
    lat = inputs["tas"]["latitude"].broadcast_like(inputs["tas"].isel(time=0, drop=True))
    snow = xr.zeros_like(inputs["tas"]).assign_attrs(units="m")  # ERA5 inputs: snow-free
    indices = fire_weather_indices(
        inputs["tas"], inputs["pr"], inputs["sfcwind"], inputs["hurs"], lat, snd=snow
    )
    days = times.astype("datetime64[D]")
    noon_days = noon.astype("datetime64[D]")
    out = {}
    for name in names:
        daily = indices[FIRE_TARGETS[name]].transpose("time", ...).values
        per_step = np.full((len(times), *daily.shape[1:]), np.nan, np.float32)
        for i, d in enumerate(noon_days):
            per_step[days == d] = daily[i]
        out[name] = xr.DataArray(
            per_step,
            dims=arrays["2t"].dims,
            coords={k: arrays["2t"][k] for k in arrays["2t"].dims},
            name=name,
        )
    return out

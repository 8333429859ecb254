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
        # before a season starts the codes carry NaN from day to day, which numba reports
        # as "invalid value encountered in _fine_fuel_moisture_code": expected, not an error
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
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
#: Snow density assumed when ERA5's snow depth ``sd`` (metres of water equivalent) comes
#: without its ``rsn``: a typical settled-snow density, so that ``sd`` becomes a depth.
DEFAULT_SNOW_DENSITY = 300.0  # kg m-3


def local_noon_steps(times: Any, lon: Any) -> tuple[Any, Any]:
    """Local solar noon of each day and longitude, as steps of the record.

    Local noon is 12:00 UTC minus ``lon / 15`` hours; each day takes the record's step
    nearest to it (within half a step). Returns the local days ``(D,)`` (datetime64[D])
    on which every longitude has its noon in the record, and the step index of each
    ``(D, W)``.
    """
    import numpy as np

    times = np.asarray(times).astype("datetime64[m]")
    east = (np.asarray(lon, np.float64) + 180.0) % 360.0 - 180.0  # degrees, (-180, 180]
    offset = np.rint(-east / 15.0 * 60.0).astype(np.int64)  # minutes after 12:00 UTC
    step = (times[1] - times[0]).astype(np.int64) if len(times) > 1 else 60
    dates = np.unique(times.astype("datetime64[D]"))
    candidates = np.arange(dates[0] - 1, dates[-1] + 2)  # local dates may fall a day away
    noon = candidates.astype("datetime64[m]")[:, None] + (12 * 60 + offset)[None, :]
    index = np.rint((noon - times[0]).astype(np.int64) / step).astype(np.int64)
    inside = (index >= 0) & (index < len(times))
    nearest = times[np.clip(index, 0, len(times) - 1)]
    close = np.abs((nearest - noon).astype(np.int64)) * 2 <= step
    complete = (inside & close).all(axis=1)
    return candidates[complete], index[complete]


def era5_fire_targets(fields: dict[str, Any], names: list[str], where: Any) -> dict[str, Any]:
    """Fire-weather targets on the ERA5 time axis, from the surface fields (by Aurora name).

    Each local day's indices come from the fields at local solar noon
    (:func:`local_noon_steps`, per longitude) and the precipitation of the 24 h that end
    then (``tp`` accumulates over each time step, so the steps in (noon - 24 h, noon] are
    summed). The indices start on the first day whose 24 h the record holds in full (a
    record starting at 00 UTC lacks the first noon's morning-before, and a part-day's rain
    would make the first FFMC too dry). Every time step gets the value of its local day at
    its longitude. Days before the indices start, or before a fire season has started
    (3 days at or above 6 degC), are NaN, which the loss and the scores leave out.

    Snow depth feeds GFWED's season rule (3 snow-free days): ERA5's ``sd`` (metres of
    water equivalent) times 1000 over the snow density ``rsn`` (or
    :data:`DEFAULT_SNOW_DENSITY`); without ``sd`` the ground is taken as snow-free.
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
    template = fields["2t"].transpose("time", "latitude", "longitude")
    times, lat, lon = (template[c].values for c in ("time", "latitude", "longitude"))
    days, steps = local_noon_steps(times, lon)
    if not len(days):
        raise EofmError(
            f"{where} holds no whole day with a time step near local noon at every longitude "
            "(needed for fire weather)."
        )

    def values(name: str) -> np.ndarray:
        return fields[name].transpose("time", "latitude", "longitude").values.astype(np.float64)

    def at_noon(array: np.ndarray) -> np.ndarray:  # (T, H, W) -> (D, H, W), per longitude
        return np.take_along_axis(array, steps[:, None, :].repeat(len(lat), axis=1), axis=0)

    per_day = _steps_per_day(times)
    complete = (steps - per_day + 1 >= 0).all(axis=1)  # the day's 24 h of rain are held
    if not complete.any():
        raise EofmError(
            f"{where} holds no local noon with the 24 h of precipitation before it (needed "
            "for fire weather): the record must span more than a day."
        )
    days, steps = days[complete], steps[complete]
    rain = np.concatenate([np.zeros((1, len(lat), len(lon))), np.cumsum(values("tp"), axis=0)])
    rain_24h = at_noon(rain[1:]) - np.take_along_axis(
        rain, np.maximum(steps - per_day + 1, 0)[:, None, :].repeat(len(lat), axis=1), axis=0
    )

    def daily(array: np.ndarray, units: str) -> xr.DataArray:
        return xr.DataArray(
            array.transpose(1, 2, 0),  # time last, as xclim iterates
            dims=("latitude", "longitude", "time"),
            coords={"latitude": lat, "longitude": lon, "time": days.astype("datetime64[ns]")},
            attrs={"units": units},
        )

    inputs = noon_inputs_from_era5(
        daily(at_noon(values("2t")), "K"),
        daily(at_noon(values("d2m")), "K"),
        daily(at_noon(values("10u")), "m/s"),
        daily(at_noon(values("10v")), "m/s"),
        daily(rain_24h, "m"),
    )
    snow = np.zeros_like(rain_24h)
    if "sd" in fields:
        density = values("rsn") if "rsn" in fields else DEFAULT_SNOW_DENSITY
        snow = at_noon(values("sd") * 1000.0 / density)
    latitude = (
        inputs["tas"]["latitude"]
        .broadcast_like(inputs["tas"].isel(time=0, drop=True))
        .assign_attrs(units="degrees_north")
    )
    indices = fire_weather_indices(
        inputs["tas"],
        inputs["pr"],
        inputs["sfcwind"],
        inputs["hurs"],
        latitude,
        snd=daily(snow, "m"),
    )
    # each step at each longitude takes the value of its local day
    east = (lon + 180.0) % 360.0 - 180.0
    local = (
        times.astype("datetime64[m]")[:, None]
        + np.rint(east / 15.0 * 60.0).astype(np.int64)[None, :]
    ).astype("datetime64[D]")  # (T, W)
    day_index = np.searchsorted(days, local)
    known = (day_index < len(days)) & (days[np.minimum(day_index, len(days) - 1)] == local)
    out = {}
    for name in names:
        series = indices[FIRE_TARGETS[name]].transpose("time", "latitude", "longitude").values
        gathered = np.take_along_axis(
            series, np.minimum(day_index, len(days) - 1)[:, None, :].repeat(len(lat), 1), axis=0
        )
        gathered[~np.broadcast_to(known[:, None, :], gathered.shape)] = np.nan
        out[name] = xr.DataArray(
            gathered.astype(np.float32),
            dims=("time", "latitude", "longitude"),
            coords={"time": times, "latitude": lat, "longitude": lon},
            name=name,
        ).transpose(*fields["2t"].dims)
    return out


def _steps_per_day(times: Any) -> int:
    """Time steps in 24 h (the record's step must divide a day)."""
    import numpy as np

    if len(times) < 2:
        return 1
    minutes = int((times[1] - times[0]) / np.timedelta64(1, "m"))
    return max(1, (24 * 60) // minutes)

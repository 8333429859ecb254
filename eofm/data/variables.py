"""What a weather target is: units, a long name and the CF standard name where one fits.

Taken from the data file's own attributes when it has them (ERA5's NetCDF does), else
from this table (derived targets such as the fire-weather indices). Accumulated targets
(``tp``, ``e``) are sums over the lead window, which their ``cell_methods`` say.
"""

from __future__ import annotations

from typing import Any

#: name -> (units, long name, CF standard name or "")
KNOWN = {
    "tp": ("m", "Total precipitation", "lwe_thickness_of_precipitation_amount"),
    "e": ("m of water equivalent", "Evaporation", "lwe_thickness_of_water_evaporation_amount"),
    "sp": ("Pa", "Surface pressure", "surface_air_pressure"),
    "tcw": ("kg m**-2", "Total column water", "atmosphere_mass_content_of_water"),
    "2t": ("K", "2 metre temperature", "air_temperature"),
    "d2m": ("K", "2 metre dewpoint temperature", "dew_point_temperature"),
    "ro": ("m", "Runoff", ""),
    "swvl1": ("m**3 m**-3", "Volumetric soil water layer 1", ""),
    "fwi": ("1", "Fire Weather Index", ""),
    "ffmc": ("1", "Fine Fuel Moisture Code", ""),
    "dmc": ("1", "Duff Moisture Code", ""),
    "dc": ("1", "Drought Code", ""),
    "isi": ("1", "Initial Spread Index", ""),
    "bui": ("1", "Buildup Index", ""),
}


def describe_variable(name: str, attrs: dict[str, Any] | None = None) -> dict[str, str]:
    """``units``, ``long_name`` (and ``standard_name``) of a target."""
    attrs = attrs or {}
    units, long_name, standard = KNOWN.get(name, ("1", name, ""))
    out = {
        "units": str(attrs.get("units") or units),
        "long_name": str(attrs.get("long_name") or long_name),
    }
    if attrs.get("standard_name") or standard:
        out["standard_name"] = str(attrs.get("standard_name") or standard)
    return out

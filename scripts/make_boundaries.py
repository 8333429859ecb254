"""Writes eofm/data/boundaries/ne_110m_countries.geojson, the bundled country boundaries.

Source: Natural Earth 1:110m Cultural Vectors, Admin 0 - Countries (public domain,
naturalearthdata.com), as the copy shipped in pyogrio's test fixtures
(``pyogrio/tests/fixtures/naturalearth_lowres``). Kept: ``name``, ``iso_a3`` and
``continent``; coordinates rounded to 0.01 degree (the data are 1:110m).

    python scripts/make_boundaries.py
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (
    Path(pyogrio.__file__).parent / "tests/fixtures/naturalearth_lowres/naturalearth_lowres.shp"
)
TARGET = ROOT / "eofm" / "data" / "boundaries" / "ne_110m_countries.geojson"


def main() -> None:
    countries = gpd.read_file(SOURCE)[["name", "iso_a3", "continent", "geometry"]]
    countries = countries.to_crs("EPSG:4326")
    countries["geometry"] = shapely.set_precision(countries.geometry.values, 0.01)
    countries = countries[~countries.geometry.is_empty].sort_values("name")
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    countries.to_file(TARGET, driver="GeoJSON", COORDINATE_PRECISION=2)
    print(f"{TARGET}: {len(countries)} countries, {TARGET.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()

"""Predictions on gridded data, as opposed to the GeoTIFF scene engine of :mod:`eofm.predict`:
a weather run's variables written as NetCDF/zarr (``weather``, ``weather_files``) and
fire-danger maps from a datacube (``danger_map``, ``mesogeos_danger``)."""

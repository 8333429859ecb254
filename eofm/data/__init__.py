"""Datasets and datamodules. Files are read with rasterio; bands are referred to by name."""

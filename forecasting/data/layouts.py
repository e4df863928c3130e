"""Names of the supported input layouts (a leaf module so the CLI can list them without importing xarray)."""

#: canonical zarr store, WeatherBench2 zarr, Copernicus CDS NetCDF (files or zip), makani HDF5 + data.json, GRIB
LAYOUTS = ("canonical", "wb2", "cds", "makani", "grib")

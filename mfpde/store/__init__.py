"""Store room: results on disk — the one atomic writer (``atomic``), ``Solution`` →
labelled xarray → NetCDF (``netcdf``), the HDF5 run store of finite-width runs (``runs``)
and the output-path checks (``paths``).

Imports the Problem and System rooms (and ``mfpde.solvers`` for nothing).
"""

"""Validation studies: each seed setting of SPEC §5 against finite-width SGD (issue 6).

``python -m validation [STUDY ...] [--quick] [--out DIR]`` or ``mfpde validate …`` runs the
studies (all by default), writes NetCDF limits, HDF5 run stores and a JSON summary per study
into the output folder and PNG figures into ``docs/figures/`` (full mode).  Each study module
states its pass/fail criteria in its docstring; ``docs/validation.md`` reports the results.
"""
from validation.runner import STUDIES, main, run_studies

__all__ = ["STUDIES", "main", "run_studies"]

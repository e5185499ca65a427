"""Error types of mfpde (shared by every room).

Every error a user can cause is a :class:`MfpdeError`; its message is one sentence that
names the offending key, file or value and says what is allowed.  The CLI turns these into
a one-line message and exit status 2.  This module imports nothing from mfpde.
"""
from __future__ import annotations


class MfpdeError(Exception):
    """Base class of every error mfpde raises on purpose."""


class ConfigError(MfpdeError, ValueError):
    """A problem description (TOML, CLI flag or Python argument) is invalid."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class DataError(MfpdeError, ValueError):
    """A data file or data array is missing, unreadable or of the wrong shape."""


class StoreError(MfpdeError, OSError):
    """A result file (NetCDF/HDF5) cannot be read or written."""


class BlowUpError(MfpdeError, FloatingPointError):
    """The state became non-finite (or exceeded its bound) during time stepping.

    ``partial`` holds whatever was saved before the blow-up (e.g. a ``Solution``).
    """

    def __init__(self, message: str, partial=None, time: float | None = None,
                 step: int | None = None, layer: str | None = None):
        super().__init__(message)
        self.partial = partial
        self.time = time
        self.step = step
        self.layer = layer

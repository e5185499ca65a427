"""The one Numba configuration of mfpde (the System and Stepper rooms import it).

``njit`` is :func:`numba.njit` with the project's flags: ``cache=True`` (kernels are
module-level and compiled once per machine; a fresh clone recompiles) and a fastmath subset
that keeps ``isnan``/``isfinite`` honest (``{"contract", "reassoc", "arcp"}`` without
``nnan``/``ninf``).  Set ``MFPDE_JIT_CACHE=0`` to disable the on-disk cache.
"""
from __future__ import annotations

import os
import warnings

import numba
from numba.core.errors import NumbaExperimentalFeatureWarning

FASTMATH = frozenset({"contract", "reassoc", "arcp"})
CACHE = os.environ.get("MFPDE_JIT_CACHE", "1") != "0"

# user activations are passed to kernels as first-class functions (experimental in numba)
warnings.filterwarnings("ignore", category=NumbaExperimentalFeatureWarning)


def njit(*args, parallel: bool = False, **kwargs):
    """``numba.njit`` with mfpde's flags (cache, NaN-safe fastmath subset)."""
    kwargs.setdefault("cache", CACHE)
    kwargs.setdefault("fastmath", set(FASTMATH))
    kwargs.setdefault("nogil", True)
    if parallel:
        kwargs["parallel"] = True
    return numba.njit(*args, **kwargs)


prange = numba.prange


def _launch_threads() -> None:
    """Start Numba's parallel runtime before any cached parallel kernel is loaded.

    Cached kernels that call ``parallel=True`` kernels reference the runtime's symbols
    (``allocate_sched`` …); loading them from the cache before the runtime is up aborts
    with "LLVM ERROR: Symbol not found".  Starting it eagerly avoids that.
    """
    from numba.np.ufunc import parallel

    parallel._launch_threads()


_launch_threads()

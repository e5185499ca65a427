"""The one Numba configuration of mfpde (the Problem, System, Stepper and Finite rooms import it).

``njit`` is :func:`numba.njit` with the project's flags: ``cache=True`` and a fastmath subset
that keeps ``isnan``/``isfinite`` honest (``{"contract", "reassoc", "arcp"}`` without
``nnan``/``ninf``) and ``error_model="numpy"`` (division by zero gives inf/nan, which the
finite guards catch, instead of a branch per division that blocks vectorization).

Cache policy.  Numba validates a cached function only against its *own* source file, so a
stepper cached from ``solvers/explicit.py`` would keep running the kernels of an older
``mfpde/system/kernels.py``.  mfpde therefore keys the cache directory on a hash of the source files
that import this module (:func:`kernel_sources`, found by scanning mfpde/ and solvers/) plus the Numba version: ``<repo>/.numba-cache/<hash>/``
(a fresh clone, or any edit, recompiles once).  ``MFPDE_JIT_CACHE=0`` disables caching; an
explicit ``NUMBA_CACHE_DIR`` set by the user is respected.

Vector width.  LLVM tunes most AVX-512 CPUs to prefer 256-bit vectors (a frequency penalty of
early Skylake-X chips), which halves the lanes of the elementwise loops (activations, fused
passes).  Where the host has AVX-512 and the user has set neither ``NUMBA_CPU_NAME`` nor
``NUMBA_CPU_FEATURES``, mfpde sets ``NUMBA_CPU_FEATURES`` to the host's own features plus
``-prefer-256-bit`` before anything is compiled (:data:`VECTOR_FEATURES`): the same instruction
set, 512-bit loops (measured: tanh's φ/φ' 1.3× faster in registers, the L = 1 Euler step 12 %;
docs/benchmarks.md).  ``MFPDE_VECTOR_WIDTH=256`` keeps LLVM's choice; any other value than 256 or
512 is refused at import.  Child processes inherit the variable, so they compile the same code.

Threads.  OpenMP's default busy-waiting makes every parallel region cost milliseconds on a
loaded machine, so ``OMP_WAIT_POLICY=passive`` is the default here, and kernels run their
elementwise passes serially below ``PARALLEL_MIN`` elements.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

_PKG = Path(__file__).resolve().parent
_IMPORTS_JIT = re.compile(r"^\s*(from\s+mfpde\._jit\s+import|from\s+mfpde\s+import\s+[^\n]*\b_jit\b|import\s+mfpde\._jit)",
                          re.MULTILINE)


def kernel_sources(package: Path | None = None) -> list[Path]:
    """The source files that can define compiled kernels: this file and every module of mfpde
    and solvers/ that imports it (derived, not listed by hand, so a new kernel module — or one
    whose kernels are only inlined elsewhere, like edges.py — is never left out of the key)."""
    pkg = _PKG if package is None else Path(package)
    files = sorted(list(pkg.rglob("*.py")) + list((pkg.parent / "solvers").glob("*.py")))
    return [p for p in files if p == pkg / "_jit.py" or _IMPORTS_JIT.search(p.read_text(encoding="utf-8", errors="replace"))]


def _source_hash(package: Path | None = None) -> str:
    import numba

    h = hashlib.sha256(numba.__version__.encode())
    for p in kernel_sources(package):
        h.update(f"{p.parent.name}/{p.name}".encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


CACHE = os.environ.get("MFPDE_JIT_CACHE", "1") != "0"


def _vector_features() -> str | None:
    """The NUMBA_CPU_FEATURES value that lifts LLVM's 256-bit preference on an AVX-512 host, or
    None (no AVX-512, a user's own NUMBA_CPU_NAME/NUMBA_CPU_FEATURES, MFPDE_VECTOR_WIDTH=256, or
    Numba's CPU target already built by code compiled before mfpde was imported)."""
    width = os.environ.get("MFPDE_VECTOR_WIDTH", "512").strip()
    if width not in ("256", "512"):
        from mfpde.errors import ConfigError

        raise ConfigError("MFPDE_VECTOR_WIDTH", f"must be 256 or 512, got {width!r}")
    if width == "256" or os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return None
    import sys

    reg = sys.modules.get("numba.core.registry")
    if reg is not None and "_toplevel_target_context" in reg.cpu_target.__dict__:
        return None                                   # too late: kernels would mix two targets
    from llvmlite import binding as ll

    try:
        feats = ll.get_host_cpu_features()
    except RuntimeError:                              # a platform that cannot report its features
        return None
    if not feats.get("avx512f", False):
        return None
    return feats.flatten() + ",-prefer-256-bit"


VECTOR_FEATURES = _vector_features()
if VECTOR_FEATURES is not None:
    os.environ["NUMBA_CPU_FEATURES"] = VECTOR_FEATURES

import numba  # noqa: E402

if VECTOR_FEATURES is not None:
    numba.config.CPU_FEATURES = VECTOR_FEATURES      # numba imported before mfpde: its config too
from numba.core.errors import NumbaExperimentalFeatureWarning  # noqa: E402

if CACHE and not os.environ.get("NUMBA_CACHE_DIR"):
    CACHE_DIR = str((_PKG.parent / ".numba-cache" / _source_hash()))
    os.environ["NUMBA_CACHE_DIR"] = CACHE_DIR
    numba.config.CACHE_DIR = CACHE_DIR
else:
    CACHE_DIR = os.environ.get("NUMBA_CACHE_DIR", "")

def cache_is_warm(cache_dir: str | None = None) -> bool:
    """Whether compiled kernels of this source version are cached (else the first solve of a
    fresh install, or after an edit of a kernel module, compiles them: 1–3 minutes)."""
    d = CACHE_DIR if cache_dir is None else cache_dir
    if not CACHE or not d:
        return False
    p = Path(d)
    return p.is_dir() and any(p.rglob("*.nbi"))


FASTMATH = frozenset({"contract", "reassoc", "arcp"})
PARALLEL_MIN = 1 << 16   # elementwise passes on fewer elements run serially

# user activations are passed to kernels as first-class functions (experimental in numba)
warnings.filterwarnings("ignore", category=NumbaExperimentalFeatureWarning)


def njit(*args, parallel: bool = False, **kwargs):
    """``numba.njit`` with mfpde's flags (cache, NaN-safe fastmath subset)."""
    kwargs.setdefault("cache", CACHE)
    kwargs.setdefault("fastmath", set(FASTMATH))
    kwargs.setdefault("nogil", True)
    # numpy semantics for float division by zero (inf/nan, no exception check): without it
    # every division carries a branch and LLVM does not vectorize the elementwise loops
    kwargs.setdefault("error_model", "numpy")
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

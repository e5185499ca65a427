"""The Numba cache key (mfpde/_jit.py): every module that can define or inline a compiled
kernel is part of it, so an edit there never runs stale cached kernels."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mfpde import _jit

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_with_compiled_kernels_is_in_the_cache_key():
    keyed = {p.resolve() for p in _jit.kernel_sources()}
    compiled = [p for p in sorted((ROOT / "mfpde").rglob("*.py")) + sorted((ROOT / "solvers").glob("*.py"))
                if re.search(r"@njit|\bnjit\(|numba\.(njit|jit|vectorize|cfunc)", p.read_text(encoding="utf-8"))]
    assert len(compiled) >= 8
    missing = [p.name for p in compiled if p.resolve() not in keyed]
    assert missing == []
    assert (ROOT / "mfpde" / "problem" / "edges.py").resolve() in keyed      # inlined into kernels.py only: once forgotten


def test_editing_a_kernel_module_changes_the_cache_key_and_editing_plain_python_does_not(tmp_path):
    shutil.copytree(ROOT / "mfpde", tmp_path / "mfpde", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "solvers", tmp_path / "solvers", ignore=shutil.ignore_patterns("__pycache__"))
    pkg = tmp_path / "mfpde"
    h0 = _jit._source_hash(pkg)
    assert h0 == _jit._source_hash(ROOT / "mfpde")
    with open(pkg / "checks.py", "a") as f:          # no kernels: the cache stays valid
        f.write("\n# an edit\n")
    assert _jit._source_hash(pkg) == h0
    for name in ("mfpde/problem/edges.py", "mfpde/system/kernels.py", "solvers/explicit.py"):
        with open(tmp_path / name, "a") as f:
            f.write("\n# an edit\n")
        h1 = _jit._source_hash(pkg)
        assert h1 != h0, name
        h0 = h1
    new = pkg / "new_kernels.py"                     # a new kernel module joins the key by itself
    new.write_text("from mfpde._jit import njit\n")
    assert _jit._source_hash(pkg) != h0


@pytest.mark.slow
def test_a_first_default_solve_compiles_only_the_kernels_its_problem_reaches(tmp_path):
    """Issue 15: the kernels specialize at compile time (mfpde.system.kernels.variant), so the
    embedded default (L = 2, tanh, linear edges, 64 × 64 nodes on 64 points: small, serial) must not
    compile the parallel passes, the general-edge passes, the Jacobian (jvp: explicit stepper), the
    one-hidden-layer pass or any activation but tanh and the identity output.  Read from the Numba
    cache that a solve with an empty cache leaves (one index file per compiled function)."""
    cache = tmp_path / "nbcache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    r = subprocess.run([sys.executable, "-m", "mfpde.cli", "solve", "-o", str(tmp_path / "d.nc")], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    names = {p.name.split("-")[0] for p in cache.rglob("*.nbi")}
    assert "activations._tanh_block" in names and "explicit.rk_fixed" in names   # the positive controls
    compiled = sorted(n for n in names if re.search(r"parallel|_edge_|jvp\.|shallow|sigmoid|relu|erf|softplus|gelu", n))
    assert compiled == []

"""The Numba cache key (mfpde/_jit.py): every module that can define or inline a compiled
kernel is part of it, so an edit there never runs stale cached kernels."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

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

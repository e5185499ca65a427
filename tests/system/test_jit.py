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


def _in_fresh_python(code: str, **env_changes) -> str:
    """stdout of ``code`` in a new interpreter whose environment has no NUMBA_CPU_* / MFPDE_VECTOR_WIDTH
    (those of the test process: mfpde set NUMBA_CPU_FEATURES there) except ``env_changes``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "MFPDE_VECTOR_WIDTH")}
    env.update(env_changes, MFPDE_JIT_CACHE="0", NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


_ZMM_PROBE = """
import os, numpy as np
import mfpde._jit as j
@j.njit
def f(a, b):
    for i in range(a.shape[0]):
        a[i] = a[i] * b[i] + 1.0
f(np.ones(64), np.ones(64))
asm = f.inspect_asm(f.signatures[0])
print("FEATURES", j.VECTOR_FEATURES is not None, os.environ.get("NUMBA_CPU_FEATURES", "")[-16:])
print("ZMM", "%zmm" in asm)
"""


def _host_has_avx512() -> bool:
    from llvmlite import binding as ll
    try:
        return bool(ll.get_host_cpu_features().get("avx512f", False))
    except RuntimeError:
        return False


def test_on_an_avx512_host_loops_get_512_bit_vectors_unless_asked_for_256():
    out = _in_fresh_python(_ZMM_PROBE)
    if _host_has_avx512():
        assert "FEATURES True ,-prefer-256-bit" in out, out
        assert "ZMM True" in out, out               # the elementwise loop runs on 8 doubles per instruction
    else:
        assert "FEATURES False" in out and "ZMM False" in out, out
    keep = _in_fresh_python(_ZMM_PROBE, MFPDE_VECTOR_WIDTH="256")
    assert "FEATURES False" in keep, keep          # LLVM's own choice, NUMBA_CPU_FEATURES left unset


def test_a_users_own_numba_cpu_setting_or_an_earlier_numba_compile_is_respected():
    from llvmlite import binding as ll
    host = ll.get_host_cpu_features().flatten()
    out = _in_fresh_python(_ZMM_PROBE, NUMBA_CPU_FEATURES=host)
    assert "FEATURES False" in out and not out.split("FEATURES False ")[1].startswith(",-prefer-256-bit"), out
    before = _in_fresh_python("import numba\n@numba.njit\ndef g(x):\n    return x + 1\ng(1)\n" + _ZMM_PROBE)
    assert "FEATURES False" in before, before      # the CPU target was built already: one target per process


def test_a_bad_vector_width_is_refused_with_one_line(tmp_path):
    env = dict(os.environ, MFPDE_VECTOR_WIDTH="1024")
    env.pop("NUMBA_CPU_FEATURES", None)
    code = subprocess.run([sys.executable, "-c", "import mfpde._jit"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert code.returncode != 0 and "ConfigError: MFPDE_VECTOR_WIDTH: must be 256 or 512, got '1024'" in code.stderr
    cli = subprocess.run([sys.executable, "-c", "import sys; from mfpde.cli import main; sys.exit(main())", "solve",
                          "-o", str(tmp_path / "d.nc")], env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2, cli.stderr[-2000:]
    assert cli.stderr.strip().splitlines() == ["mfpde: error: MFPDE_VECTOR_WIDTH: must be 256 or 512, got '1024'"]
    assert not (tmp_path / "d.nc").exists()

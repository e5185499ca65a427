"""Tests of the vectorized φ/φ' kernels of mfpde.problem.activations.

Accuracy: every built-in φ and φ' is compared with an 80-bit (np.longdouble) reference over
dense grids in [−40, 40], logarithmic grids out to ±700, the range switch points and ±inf; the
bound is 4 ulp of the double nearest the reference (plus a few × 2^-1074 where the value is
subnormal).  erf/erfc references are computed here from their series and continued fraction
in 80-bit arithmetic, independent of the kernels' fitted polynomials.  The kernels are checked
as the lead's kernels get them: through pair_block / phi_block (their own compiled loops) and
through phi_dphi / tanh_fast inlined into a loop compiled with the project's fastmath flags.

Vectorization: the assembly of each block kernel must use packed double instructions and call
no libm function, natively and for AVX2 (NUMBA_CPU_NAME=haswell, in a subprocess).
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mfpde import _jit
from mfpde.problem import activations as A

LD = np.longdouble
assert np.finfo(LD).nmant >= 63, "the references need 80-bit long double (x86-64)"

NAMES = ["identity", "tanh", "relu", "sigmoid", "erf", "softplus", "gelu"]
PI = LD("3.14159265358979323846264338327950288")
SQRTPI = np.sqrt(PI)
TINY = 2.0 ** -1074
ULPS = 4.0
# gelu(x) for x < −1/2 is −2^k (1 + q)·y G(t)/w: G (≤ 1 ulp) and five roundings (y·G, ÷ w, w,
# q, the final fma) of ≤ 1/2 ulp each, so ≤ 3.5 units of 2^-53 relative, i.e. up to 7 ulp where
# the result sits at the bottom of a binade; 5 ulp is what the grid below reaches with margin.
ULPS_GELU_NEG = 5.0


def bound(name, x):
    """The ulp bound per point: ULPS, except gelu's φ for x < −1/2 (see ULPS_GELU_NEG)."""
    return np.where((name == "gelu") & (x < -0.5), ULPS_GELU_NEG, ULPS)


# ------------------------------------------------------------------ 80-bit references

def _exp_neg_sq(x, scale):
    """exp(−scale·x²) with x² split exactly (Veltkamp: x = xh + xl, 26-bit xh)."""
    x = np.asarray(x, np.float64)
    c = 134217729.0 * x
    xh = c - (c - x)
    xl = (x - xh).astype(LD)
    xh = xh.astype(LD)
    return np.exp(-scale * xh * xh) * np.exp(-scale * (2 * xh * xl + xl * xl))


def _erfcx(v):
    """e^{v²} erfc(v), v ≥ 0: continued fraction (v ≥ 1, 3000 levels) or the positive series
    erf v = 2/√π e^{−v²} Σ 2^n v^{2n+1}/(2n+1)!! (v < 1)."""
    v = np.asarray(v, LD)
    out = np.empty_like(v)
    big = v >= 1
    vb = v[big]
    t = np.zeros_like(vb)
    for k in range(3000, 0, -1):
        t = (LD(k) / 2) / (vb + t)
    out[big] = 1 / (SQRTPI * (vb + t))
    vs = v[~big]
    out[~big] = np.exp(vs * vs) - 2 / SQRTPI * _series(vs)
    return out


def _series(v):
    term = v.copy()
    s = v.copy()
    v2 = 2 * v * v
    for n in range(1, 80):
        term = term * v2 / (2 * n + 1)
        s = s + term
    return s


def reference(name, x):
    """(φ, φ', slack) in long double; slack is an absolute error bound of the reference itself
    where it cancels (gelu' near its root), else 0."""
    x = np.asarray(x, np.float64)
    xl = x.astype(LD)
    ax = np.abs(xl)
    slack = np.zeros_like(xl)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if name == "identity":
            return xl, np.ones_like(xl), slack
        if name == "relu":
            return np.where(xl > 0, xl, 0), np.where(xl > 0, LD(1), LD(0)), slack
        if name == "tanh":
            c = np.cosh(np.minimum(ax, LD(5000)))
            return np.tanh(xl), 1 / (c * c), slack
        e = np.exp(-ax)
        sig = np.where(xl >= 0, 1 / (1 + e), e / (1 + e))
        dsig = e / ((1 + e) * (1 + e))
        if name == "sigmoid":
            return sig, dsig, slack
        if name == "softplus":
            return np.maximum(xl, 0) + np.log1p(e), sig, slack
        if name == "erf":
            axd = np.abs(x)
            E = _exp_neg_sq(axd, LD(1))
            small = axd < 1
            erf = np.where(small, 2 / SQRTPI * E * _series(ax), 1 - E * _erfcx(ax))
            return np.copysign(erf, xl), 2 / SQRTPI * E, slack
        if name == "gelu":
            axd = np.abs(x)
            E = _exp_neg_sq(axd, LD(0.5))
            Q = E * _erfcx(ax / np.sqrt(LD(2))) / 2
            Phi = np.where(xl >= 0, 1 - Q, Q)
            xphi = xl * E / np.sqrt(2 * PI)
            return xl * Phi, Phi + xphi, 2.0 ** -62 * (Phi + np.abs(xphi))
    raise ValueError(name)


def ulp_error(got, ref, slack=0.0):
    """|got − ref| in ulps of the double nearest ref, with subnormal results measured against
    2^-1074 and ``slack`` (a reference error bound) removed first."""
    got = np.asarray(got, np.float64)
    refd = ref.astype(np.float64)
    err = np.abs(got.astype(LD) - ref) - slack
    err = np.maximum(err, 0).astype(np.float64)
    unit = np.maximum(np.spacing(np.abs(refd)), TINY)
    both_inf = np.isinf(refd) & (got == refd)
    return np.where(both_inf, 0.0, err / unit)


def grid():
    dense = np.linspace(-40.0, 40.0, 400_001)
    tails = np.geomspace(1e-310, 700.0, 20_000)
    # switch points of the kernels (|x| = 0.5 in erf, y = 3 in gelu', 19-20 in tanh, e = 1/2 in
    # softplus, the exp clamp) and the gelu' root, each with its neighbouring doubles
    sw = [0.5, 3.0, 3.0 * math.sqrt(2.0), 19.0, 20.0, math.log(2.0), 27.0, 27.3, 37.5, 38.6,
          0.7517915246935645, 354.0, 372.5, 373.0, 375.0, 745.0, 708.4]
    near = np.concatenate([s + np.arange(-64, 65) * np.spacing(s) for s in sw])
    pos = np.concatenate([tails, near, [5e-324, 2.2250738585072014e-308, 1.0, 2.0]])
    return np.concatenate([dense, pos, -pos, [0.0, -0.0]])


X = grid()


def _pairs_block(name, x):
    a = np.empty_like(x)
    p = np.empty_like(x)
    A.pair_block(A.get(name).code, x, a, p, A.user_functions())
    return a, p


@pytest.mark.parametrize("name", NAMES)
def test_block_accuracy_4ulp(name):
    a, p = _pairs_block(name, X)
    ra, rp, slack = reference(name, X)
    ea = ulp_error(a, ra) / bound(name, X)
    ep = ulp_error(p, rp, slack) / ULPS
    worst_a = X[np.argmax(ea)]
    worst_p = X[np.argmax(ep)]
    assert ea.max() <= 1.0, f"{name}: φ off by {ea.max():.2f} × its bound at x = {worst_a!r}"
    assert ep.max() <= 1.0, f"{name}: φ' off by {ep.max() * ULPS:.2f} ulp at x = {worst_p!r}"


@pytest.mark.parametrize("name", NAMES)
def test_phi_block_agrees_with_pair_block_to_one_ulp(name):
    a, _ = _pairs_block(name, X)
    b = np.empty_like(X)
    A.phi_block(A.get(name).code, X, b, A.user_functions())
    # the φ-only kernel may round once differently (LLVM may fold tanh's −expm1·(1/den) into a
    # division when 1/den has no second use): both are held to their ulp bound above
    np.testing.assert_array_max_ulp(b, a, 1)


# (φ(+inf), φ(−inf), φ'(+inf), φ'(−inf)): the limits
LIMITS = {
    "identity": (np.inf, -np.inf, 1.0, 1.0),
    "tanh": (1.0, -1.0, 0.0, 0.0),
    "relu": (np.inf, 0.0, 1.0, 0.0),
    "sigmoid": (1.0, 0.0, 0.0, 0.0),
    "erf": (1.0, -1.0, 0.0, 0.0),
    "softplus": (np.inf, 0.0, 1.0, 0.0),
    "gelu": (np.inf, 0.0, 1.0, 0.0),
}


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_infinities(name):
    x = np.array([np.nan, np.inf, -np.inf])
    a, p = _pairs_block(name, x)
    assert np.isnan(a[0]) and np.isnan(p[0]), f"{name}: NaN must propagate to φ and φ'"
    up, lo, dup, dlo = LIMITS[name]
    assert (a[1], a[2], p[1], p[2]) == (up, lo, dup, dlo)
    # NaN inside vector lanes too (a 3-element array runs the scalar remainder loop only), among
    # finite neighbours of every size, and the neighbours unaffected
    rng = np.random.default_rng(5)
    x = rng.normal(scale=8.0, size=203)
    where = np.array([0, 1, 7, 8, 16, 33, 64, 100, 150, 202])
    x[where] = np.nan
    a, p = _pairs_block(name, x)
    assert np.isnan(a[where]).all() and np.isnan(p[where]).all(), f"{name}: NaN must propagate in every lane"
    keep = np.setdiff1d(np.arange(x.size), where)
    fa, fp = _pairs_block(name, x[keep])
    assert np.array_equal(a[keep], fa) and np.array_equal(p[keep], fp)


def test_named_limits():
    x = np.array([-np.inf, np.inf, -0.0, 0.0])
    assert list(_pairs_block("gelu", x)[0][:2]) == [0.0, np.inf]
    assert list(_pairs_block("relu", np.array([np.nan]))[0]) != [0.0]
    t, dt = _pairs_block("tanh", x)
    assert list(t) == [-1.0, 1.0, 0.0, 0.0] and math.copysign(1.0, t[2]) == -1.0
    # tanh' is sech²: relative accuracy where 1 − t² is 0 (|x| > 19)
    _, d = _pairs_block("tanh", np.array([20.0, 300.0]))
    np.testing.assert_allclose(d, 4.0 * np.exp(-2.0 * np.array([20.0, 300.0])), rtol=1e-15)


# ------------------------------------------------ what inlining callers get (project flags)

@_jit.njit
def _inlined_loop(code, h, a, p, fns):
    for i in range(h.shape[0]):
        a[i], p[i] = A.phi_dphi(code, h[i], fns)


@_jit.njit
def _inlined_tanh(h, a):
    for i in range(h.shape[0]):
        a[i] = A.tanh_fast(h[i])


@pytest.mark.parametrize("name", NAMES)
def test_phi_dphi_inlined_with_project_flags(name):
    x = X[::7].copy()
    a = np.empty_like(x)
    p = np.empty_like(x)
    _inlined_loop(A.get(name).code, x, a, p, A.user_functions())
    ra, rp, slack = reference(name, x)
    assert (ulp_error(a, ra) <= bound(name, x)).all()
    assert ulp_error(p, rp, slack).max() <= ULPS


def test_tanh_fast_inlined_with_project_flags():
    x = X[::3].copy()
    a = np.empty_like(x)
    _inlined_tanh(x, a)
    assert ulp_error(a, reference("tanh", x)[0]).max() <= ULPS
    b = np.empty_like(x)
    A.phi_block(A.TANH, x, b, ())
    np.testing.assert_array_equal(a, b)


def test_user_activation_through_pair_block():
    act = A.register("_simd_test_cube", lambda x: x * x * x, lambda x: 3.0 * x * x)
    try:
        x = np.linspace(-2.0, 2.0, 101)
        a = np.empty_like(x)
        p = np.empty_like(x)
        A.pair_block(act.code, x, a, p, A.user_functions())
        np.testing.assert_allclose(a, x ** 3, rtol=1e-15)
        np.testing.assert_allclose(p, 3 * x ** 2, rtol=1e-15)
    finally:
        A._USER.pop("_simd_test_cube")
        A._USER_FNS[2 * (act.code - A.USER_CODE0)] = A._ZERO
        A._USER_FNS[2 * (act.code - A.USER_CODE0) + 1] = A._ZERO


def test_builtin_numpy_pairs_agree_with_kernels():
    """The numpy reference pairs (used by the numpy system) agree with the kernels to 1e-12
    relative, the tolerance of the stored references (the numpy pairs themselves lose up to
    ~1e-13 in gelu's tail, through ndtr's rounded x/√2)."""
    x = np.linspace(-30.0, 30.0, 6001)
    for name in NAMES:
        a, p = _pairs_block(name, x)
        na, npp = A.get(name).pair(x)
        np.testing.assert_allclose(a, na, rtol=1e-12, atol=1e-300, err_msg=name)
        np.testing.assert_allclose(p, npp, rtol=1e-12, atol=1e-300, err_msg=name)


# ---------------------------------------------------------------------- vectorization

# (identity's φ-only block is a copy, which LLVM turns into a memcpy call: not checked)
BLOCKS = [f"_{n}_block" for n in NAMES] + [f"_{n}_phi_block" for n in NAMES if n != "identity"] + \
    [f"_{n}_dot_row" for n in NAMES]      # the fused L = 1 pass: x·w + c, φ, φ' and Σ φ u in one loop
# a libm (or compiler-rt) function named anywhere in the assembly: a scalar call in the loop
_LIBM = re.compile(r"\b(exp|expm1|tanh|erf|erfc|log|log1p|pow|ldexp|fma|rint|floor|copysign)(@PLT)?\b")


def _asm_of(mod, name):
    """Assembly of a fresh, uncached compilation of block kernel ``name`` (cached code cannot be
    inspected), with the kernel's own options."""
    import numba
    from numba import types
    disp = getattr(mod, name)
    opts = {k: v for k, v in disp.targetoptions.items() if k != "nopython"}
    fresh = numba.njit(**{**opts, "cache": False})(disp.py_func)
    arr = types.float64[::1]
    if name.endswith("_dot_row"):
        sig = (types.float64, arr, arr, arr, arr, arr)
    else:
        sig = (arr, arr) if name.endswith("_phi_block") else (arr, arr, arr)
    fresh.compile(sig)
    return fresh.inspect_asm(sig)


def _check_asm(asm, regs):
    """The loop uses packed double instructions on ``regs`` (a regex class: "y" or "yz") and no
    libm function."""
    packed = re.findall(rf"\bv\w+pd\s[^\n]*%[{regs}]mm", asm)
    assert len(packed) >= 8, f"{len(packed)} packed double ops on [{regs}]mm registers"
    hit = _LIBM.search(asm)
    assert hit is None, f"calls libm {hit and hit.group(0)}"


@pytest.mark.parametrize("name", BLOCKS)
def test_block_vectorizes_natively(name):
    _check_asm(_asm_of(A, name), "yz")


def _avx2_features():
    """The host's CPU features with AVX-512 (and later) switched off: NUMBA_CPU_NAME alone keeps
    the host's features, so haswell code needs them spelled out."""
    from llvmlite import binding as ll
    feats = ll.get_host_cpu_features().flatten().split(",")
    off = ("avx512", "amx", "avx10", "evex512")
    return ",".join("-" + f[1:] if f[1:].startswith(off) else f for f in feats if f)


def test_blocks_vectorize_for_avx2_haswell():
    code = textwrap.dedent(f"""
        import re, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_activations_simd import BLOCKS, _asm_of, _check_asm
        from mfpde.problem import activations as A
        bad = []
        for name in BLOCKS:
            asm = _asm_of(A, name)
            if "%zmm" in asm:
                bad.append(name + ": zmm on haswell")
            try:
                _check_asm(asm, "y")
            except AssertionError as e:
                bad.append(name + ": " + str(e))
        print("BAD", bad)
    """)
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=_avx2_features(),
               MFPDE_JIT_CACHE="0", NUMBA_NUM_THREADS="1")
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "BAD []" in out.stdout, out.stdout[-2000:]


@pytest.mark.parametrize("name", NAMES)
def test_dot_row_is_the_pair_and_its_dot_product(name):
    """_<name>_dot_row(x, w, c, u, a, p) — the fused L = 1 pass — writes the same φ, φ' as the block
    kernel at h = x·w + c (here x = 1, c = 0: h = w exactly) and returns Σ φ u."""
    rng = np.random.default_rng(3)
    h = np.concatenate([rng.normal(scale=6.0, size=1000), [np.nan, np.inf, -np.inf, 0.0, -0.0]])
    u = rng.normal(size=h.size)
    a, p = np.empty_like(h), np.empty_like(h)
    s = getattr(A, f"_{name}_dot_row")(1.0, h, np.zeros_like(h), u, a, p)
    ra, rp = _pairs_block(name, h)
    assert np.array_equal(a, ra, equal_nan=True) and np.array_equal(p, rp, equal_nan=True)
    assert np.isnan(s)                                   # the NaN input reaches the sum
    fin = slice(0, 1000)
    s = getattr(A, f"_{name}_dot_row")(1.0, h[fin], np.zeros(1000), u[fin], a[fin], p[fin])
    assert s == pytest.approx(float(np.dot(ra[fin], u[fin])), rel=1e-13, abs=1e-13)
    # x and c enter as x·w + c (x = 2 and w = h/2: x·w = h exactly; + c rounds once, as numpy's h + c)
    c = rng.normal(size=1000)
    getattr(A, f"_{name}_dot_row")(2.0, h[fin] / 2.0, c, u[fin], a[fin], p[fin])
    ra, rp = _pairs_block(name, h[fin] + c)
    assert np.array_equal(a[fin], ra) and np.array_equal(p[fin], rp)

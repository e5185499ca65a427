"""Activation registry (Problem room): name -> (φ, φ') as Numba scalar code and numpy ufuncs.

Built-in activations have small integer codes that the compiled kernels switch on
(``identity, tanh, relu, sigmoid, erf, softplus, gelu``).  A user may register up to
``MAX_USER`` further activations as a Numba-compilable pair of scalar functions
``phi(x) -> float`` and ``dphi(x) -> float``; kernels receive them as a tuple of first-class
functions, so registering one never recompiles the system.  Imports numpy, scipy, numba,
llvmlite, mfpde._jit and mfpde.errors only.

Kernel API.  ``pair_block(code, h, a, p, fns)`` writes a[i] = φ(h[i]), p[i] = φ'(h[i]) over
1-D float64 C-contiguous arrays of equal length (a, p distinct from h); ``phi_block(code, h,
a, fns)`` writes φ only.  Each built-in has its own non-inlined block kernel (``_tanh_block``
…), compiled once however many kernels call it, and a dot-row kernel (``_tanh_dot_row(x, w, c, u,
a, p)``: a = φ(x w + c), p = φ'(x w + c), returns Σ a u) for the fused one-hidden-layer pass;
user codes loop over their pair.  The scalar ``phi_dphi(code, x, fns)`` and ``tanh_fast(x)``
are inlined into their callers and built on the same scalar functions (one source of truth).

Vectorization.  Every built-in φ/φ' is straight-line code: selects instead of branches, no
libm call (exp, expm1, log1p and erfc are evaluated here: Cody–Waite reduction with an exact
fma, Taylor/atanh series, and fitted Chebyshev polynomials), and no int64 <-> double
conversion (2^k is assembled from its exponent bits by an add and a 64-bit shift, which AVX2 has).  Loops over them compile to
packed ymm (AVX2) or zmm/ymm (AVX-512) code; tests/problem/test_activations_simd.py checks
the assembly natively and for ``NUMBA_CPU_NAME=haswell`` with AVX-512 features switched off
(``NUMBA_CPU_NAME`` alone keeps the host's features).

Accuracy (against 80-bit references, whole double range, ±inf included): φ and φ' ≤ 4 ulp
(measured ≤ 2.7), except gelu's φ for x < −1/2, ≤ 5 ulp (measured ≤ 4.5); subnormal results are
within a few × 2^-1074 absolute.  tanh' is sech² = 4e/(1 + e)², e = e^{−2|x|}, accurate
where 1 − tanh² is 0; gelu' is e^{−y²/2} (y − y0) D1(y) for −3 < x < 0 (y = −x), free of
cancellation at its root x = −y0 ≈ −0.7518 (the 80-bit reference cancels there, so the test
allows for the reference's own error bound).  The
code stays correct under the project's fastmath flags (contract, reassoc, arcp): it uses no
rounding tricks that reassociation breaks.  NaN in gives NaN out for φ and φ' of every
activation (relu included); ±inf give the limits (gelu(−inf) = 0, softplus(−inf) = 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from numba import types
from llvmlite import ir
from numba.extending import intrinsic, overload

from mfpde._jit import njit
from mfpde import checks
from mfpde.errors import ConfigError

SCALAR_SIG = types.float64(types.float64)
MAX_USER = 8
USER_CODE0 = 100

IDENTITY, TANH, RELU, SIGMOID, ERF, SOFTPLUS, GELU = range(7)
_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_TWO_OVER_SQRTPI = 2.0 / math.sqrt(math.pi)


# ---------------------------------------------------------------------------------------------
# Branch-free scalar kernels.  Every function below is straight-line code (selects, no libm
# calls, no int64 <-> double conversions) so that a loop over it vectorizes on AVX2 and
# AVX-512; they are inlined into the block kernels and into phi_dphi / tanh_fast.  They are
# written to stay accurate under the project's fastmath subset (contract, reassoc, arcp): no
# x + C - C rounding tricks, exact products by fma.

@intrinsic
def _fma(typingctx, a, b, c):
    """fma(a, b, c) = a·b + c with one rounding (llvm.fma: vfmadd on AVX2 / AVX-512)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)
    return sig, codegen


@intrinsic
def _exponent_bits(typingctx, y):
    """The double whose bits are bits(y) << 52: for y = k + _POW2_MAGIC (k integral, −1087 < k
    ≤ 960) the low mantissa bits of y hold k + 1023 + 64, which the shift moves into the exponent
    field, so the result is 2^(k+64).  One add and one vpsllq (AVX2 has both); no double <->
    integer conversion and no lane crossing."""
    sig = types.float64(types.float64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        bits = builder.shl(builder.bitcast(args[0], i64), ir.Constant(i64, 52))
        return builder.bitcast(bits, ir.DoubleType())
    return sig, codegen


_POW2_MAGIC = 6755399441055744.0 + 1087.0   # 1.5·2^52 + (1023 + 64): bias and offset of _exponent_bits
_TWO_M64 = 2.0 ** -64


@njit(inline="always")
def _pow2(k):
    """2^k for an integral double k in [−1087, 960]: 2^(k+64) assembled from bits, times
    2^-64 (exact wherever 2^k is a double; 0 below −1074)."""
    return _exponent_bits(k + _POW2_MAGIC) * _TWO_M64


_LN2_HI = 6.93147180369123816490e-01    # 32 significant bits: k·_LN2_HI is exact for |k| < 2^21
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634
_LN2 = 0.6931471805599453
_LN2_TAIL = 2.3201926491189795e-17      # ln 2 − _LN2
_EXP_MIN = -750.0                       # exp(x) rounds to 0 below −745.2
_GELU_Y0 = 0.7517915246935645           # root of gelu': x0 = −_GELU_Y0 − _GELU_Y0_LO
_GELU_Y0_LO = -1.496198998029996e-17


@njit(inline="always")
def _est8(t, t2, t4, c0, c1, c2, c3, c4, c5, c6, c7):
    """c0 + c1 t + … + c7 t^7 by Estrin's scheme (t2 = t², t4 = t⁴): four independent pairs,
    depth 3; the polynomial loops are latency-bound, not throughput-bound."""
    return ((c1 * t + c0) + (c3 * t + c2) * t2) + ((c5 * t + c4) + (c7 * t + c6) * t2) * t4


@njit(inline="always")
def _exp_reduce(hi, lo):
    """(k, q) with exp(hi + lo) = 2^k (1 + q), |q| ≤ e^{ln2/2} − 1, for hi ≤ 0 clamped at
    −750 and |lo| ≪ 1 (:func:`_exp_reduce_in_range`; NaN stays NaN: numba's max keeps a NaN first
    argument)."""
    return _exp_reduce_in_range(max(hi, _EXP_MIN), lo)


@njit(inline="always")
def _exp_reduce_in_range(hc, lo):
    """:func:`_exp_reduce` for −750 ≤ hc ≤ 0 already (no clamp; a caller whose argument is bounded
    saves the select).  r = hc − k ln2 is exact by fma (Cody–Waite with a 32-bit ln2 head);
    expm1(r) = r + r² P(r) with P the degree-10 Chebyshev fit of (e^r − 1 − r)/r² on
    [−ln2/2, ln2/2] (error 1.4e-18, from 50-digit arithmetic), evaluated by Estrin's scheme
    (dependency depth 4 instead of Horner's 10: the loops are latency-bound)."""
    k = np.rint((hc + lo) * _INV_LN2)
    r1 = _fma(-k, _LN2_HI, hc)            # exact
    r2 = lo - k * _LN2_LO
    r = r1 + r2
    rr = r * r
    r4 = rr * rr
    p8a = 2.0914679376583935e-09 * rr + (2.510520637395701e-08 * r + 2.7557273661348637e-07)
    p = p8a * (r4 * r4) + _est8(r, rr, r4, 0.5, 0.1666666666666667, 0.04166666666666667, 0.008333333333326141,
                                0.0013888888888883752, 0.00019841269874800493, 2.4801587325533363e-05,
                                2.7557255425746435e-06)
    q = r1 + (r2 + rr * p)                # r2 added to the small part: q to ~0.5 ulp
    return k, q


@njit(inline="always")
def _scale2k(k, q, f):
    """f·2^k·(1 + q) for k in [−1087, 0], rounded once even where the result is subnormal: the
    factor f is applied before 2^k, and 2^k as 2^(k+64) (normal) times the exact 2^-64."""
    return (_fma(f, q, f) * _exponent_bits(k + _POW2_MAGIC)) * _TWO_M64


@njit(inline="always")
def _exp_neg(hi, lo):
    """exp(hi + lo) for hi ≤ 0 (−inf gives 0), ≤ 1 ulp."""
    k, q = _exp_reduce(hi, lo)
    return _scale2k(k, q, 1.0)


@njit(inline="always")
def _log1p_unit(e):
    """log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e/(2 + e) (e ≤ 1/2) or
    ln 2 + 2 atanh(s), s = (e − 1)/(e + 3) (e > 1/2, exact numerator); |s| ≤ 1/5, series to s^23."""
    big = e > 0.5
    num = e - 1.0 if big else e
    den = e + 3.0 if big else e + 2.0
    s = num / den
    s2 = s * s
    s4 = s2 * s2   # Estrin's scheme (degree 10): dependency depth ~4 instead of 10
    s8 = s4 * s4
    s16 = s8 * s8
    b0 = _est8(s2, s4, s8, 0.3333333333333333, 0.2, 0.14285714285714285, 0.1111111111111111, 0.09090909090909091, 0.07692307692307693, 0.06666666666666667, 0.058823529411764705)
    b1 = _est8(s2, s4, s8, 0.05263157894736842, 0.047619047619047616, 0.043478260869565216, 0.0, 0.0, 0.0, 0.0, 0.0)
    p = b1 * s16 + b0
    v = 2.0 * s + (2.0 * s) * (s2 * p)
    return (_LN2 + (v + _LN2_TAIL)) if big else v


@njit(inline="always")
def _erfcx_g(t):
    """G(t) = (3/4) (1 + 2v) e^{v²} erfc(v) for t = (v − 3.7)/(v + 3), v in [0.35, ∞) (t in
    [−1, 1)): degree-23 Chebyshev interpolant (computed in 80-bit arithmetic from the continued
    fraction and series of erfc), in monomial form, relative error < 1e-17 before rounding.
    The factor 3/4 keeps G in [0.84, 0.97], inside one binade.  Horner, not Estrin: Estrin's
    blocks on |t| ≤ 1 cost erf and gelu up to 0.8 ulp (measured)."""
    p = 1.8102734126538658e-10
    p = p * t + 5.2067387438607206e-11
    p = p * t - 2.023862559023352e-09
    p = p * t - 1.205640032253541e-09
    p = p * t + 1.3260833024257105e-08
    p = p * t + 1.3469708829797847e-08
    p = p * t - 7.458321900818039e-08
    p = p * t - 1.0911905745647488e-07
    p = p * t + 4.4056085387230343e-07
    p = p * t + 7.469842044962224e-07
    p = p * t - 3.063911555467591e-06
    p = p * t - 4.239760523112868e-06
    p = p * t + 2.5501079651389185e-05
    p = p * t + 8.873105317530548e-06
    p = p * t - 0.00022643322287411888
    p = p * t + 0.00034970442165081094
    p = p * t + 0.0013136348566013837
    p = p * t - 0.008285904506774206
    p = p * t + 0.023367120827632957
    p = p * t - 0.042141901412217415
    p = p * t + 0.04671283666995782
    p = p * t - 0.008421567763447548
    p = p * t - 0.09525169712296748
    p = p * t + 0.928840484484266
    return p


@njit(inline="always")
def _gelu_d1(s):
    """D1(y) = (e^{y²/2} Q(y) − y/√(2π)) / (y − y0) for y = 1.5 (1 + s) in [0, 3], Q = 1 − Φ,
    y0 the root of the numerator (so gelu'(−y) = e^{−y²/2} (y − y0) D1: no cancellation at the
    root of gelu'); degree-21 Chebyshev interpolant from 80-bit values.  Horner (Estrin took
    gelu' from 2.6 to 4.7 ulp)."""
    p = 7.110304264560082e-11
    p = p * s - 2.66751630885086e-10
    p = p * s + 5.967929988576708e-10
    p = p * s - 2.1231562770522446e-09
    p = p * s + 8.297772388391163e-09
    p = p * s - 2.8485818915801143e-08
    p = p * s + 9.44354595734286e-08
    p = p * s - 3.092811356514796e-07
    p = p * s + 9.889329443477848e-07
    p = p * s - 3.077235584550924e-06
    p = p * s + 9.311087630073189e-06
    p = p * s - 2.734940315262088e-05
    p = p * s + 7.782030827527903e-05
    p = p * s - 0.00021399778988867438
    p = p * s + 0.0005671605131125826
    p = p * s - 0.0014440423658305755
    p = p * s + 0.003518474966305035
    p = p * s - 0.008165647662793473
    p = p * s + 0.01794549292627444
    p = p * s - 0.03706954048949
    p = p * s + 0.07127080655242315
    p = p * s - 0.524763841339739
    return p


@njit(inline="always")
def _identity_pair(x):
    return x, (1.0 if x == x else x)


@njit(inline="always")
def _relu_pair(x):
    a = 0.0 if x <= 0.0 else x            # NaN -> NaN
    d = 1.0 if x > 0.0 else 0.0
    return a, (d if x == x else x)


@njit(inline="always")
def _tanh_pair(x):
    """tanh |x| = −expm1(z)/(1 + e) and tanh' = 4e/(1 + e)² (sech², relative accuracy for all x;
    1 − t² for |x| < 0.35, where it does not cancel), z = −2|x|, e = e^z, with one division;
    1 + e is taken as 2 + expm1(z) where e > 1/2."""
    ax = abs(x)
    z = -2.0 * min(ax, 375.0)             # in [−750, 0]; NaN stays NaN (numba's min keeps a NaN first argument)
    k, q = _exp_reduce_in_range(z, 0.0)
    s = _pow2(k)
    em1 = s * q + (s - 1.0)               # expm1(z): exact s − 1 for k ≥ −53, else ≈ −1
    e = _fma(q, s, s)                     # one rounding, subnormal e included (s is exact)
    near0 = ax < 0.35
    den = 2.0 + em1 if near0 else 1.0 + e
    r = 1.0 / den                         # one division for both (a division costs ~10 FMAs)
    tm = -em1 * r
    t = math.copysign(tm, x)
    # sech²: 1 − t² is free of cancellation for |x| < 0.35 (t² < 0.12); beyond it 4e·r², whose
    # relative accuracy does not decay where 1 − t² would cancel
    d = _fma(-tm, tm, 1.0) if near0 else (4.0 * e) * (r * r)
    # NaN needs no select here: z, q, e, em1, r, t and d are all NaN for NaN x (tested)
    return t, d


@njit(inline="always")
def _sigmoid_of(x, e):
    """(σ(x), σ'(x)) from e = exp(−|x|)."""
    s = (1.0 if x >= 0.0 else e) / (1.0 + e)
    return s, e / (1.0 + e * (2.0 + e))


@njit(inline="always")
def _sigmoid_pair(x):
    e = _exp_neg(-abs(x), 0.0)
    s, d = _sigmoid_of(x, e)
    return (s if x == x else x), (d if x == x else x)


@njit(inline="always")
def _softplus_pair(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^{−|x|}); derivative σ(x)."""
    e = _exp_neg(-abs(x), 0.0)
    a = max(x, 0.0) + _log1p_unit(e)
    s, _ = _sigmoid_of(x, e)
    return (a if x == x else x), (s if x == x else x)


@njit(inline="always")
def _erf_pair(x):
    """erf x: x + x·P(x²) (Taylor to x^25) for |x| < 1/2, else ±(1 − erfc|x|) with
    erfc v = e^{−v²} G(t)/((3/4)(1 + 2v)); e^{−x²} from the exact split x² = p + fma(x, x, −p)."""
    ax = min(abs(x), 30.0)
    x2 = x * x
    x4 = x2 * x2   # Estrin's scheme (degree 12): dependency depth ~4 instead of 12
    x8 = x4 * x4
    x16 = x8 * x8
    b0 = _est8(x2, x4, x8, 0.1283791670955126, -0.37612638903183754, 0.11283791670955126, -0.026866170645131252, 0.005223977625442188, -0.0008548327023450853, 0.00012055332981789664, -1.492565035840625e-05)
    b1 = _est8(x2, x4, x8, 1.6462114365889248e-06, -1.6365844691234924e-07, 1.4807192815879218e-08, -1.2290555301717928e-09, 9.422759064650411e-11, 0.0, 0.0, 0.0)
    p = b1 * x16 + b0
    small = x + x * p
    pp = ax * ax
    k, q = _exp_reduce(-pp, -_fma(ax, ax, -pp))
    t = (ax - 3.7) / (ax + 3.0)
    erfc = (_scale2k(k, q, 1.0) * _erfcx_g(t)) / _fma(1.5, ax, 0.75)   # G / ((3/4)(1 + 2v))
    big = math.copysign(1.0 - erfc, x)
    a = small if ax < 0.5 else big
    d = _scale2k(k, q, _TWO_OVER_SQRTPI)
    return (a if x == x else x), (d if x == x else x)


@njit(inline="always")
def _gelu_pair(x):
    """gelu x = x Φ(x).  With y = |x|: Q(y) = 1 − Φ(y) = E m(y), E = e^{−y²/2} (exact split),
    m(y) = G(t)/(2·(3/4)(1 + 2v)), v = y/√2; Φ(x) = 1 − Q (x ≥ 0) or Q (x < 0), or the Taylor
    series of Φ for |x| < 1/2.  gelu' = Φ + x φ:
    for x < 0 it is E (m − y/√(2π)), evaluated as E (y − y0) D1(y) for y < 3 (root at −y0)."""
    y = min(abs(x), 40.0)
    pp = y * y
    k, q = _exp_reduce(-0.5 * pp, -0.5 * _fma(y, y, -pp))
    E = _scale2k(k, q, 1.0)
    t = (y - 5.232590180780452) / (y + 4.242640687119285)    # t of v = y/√2, v not rounded
    h = _erfcx_g(t)
    w = _fma(2.1213203435596424, y, 1.5)    # 2·(3/4)·(1 + 2v)
    m = h / w
    Q = _scale2k(k, q, m)                 # the tails are subnormal beyond |x| ≈ 37.5: one rounding
    x2 = x * x
    # Φ(x) = 1/2 + x R(x²) for |x| < 1/2 (Taylor to x^23)
    x4 = x2 * x2   # Estrin's scheme (degree 11): dependency depth ~4 instead of 11
    x8 = x4 * x4
    x16 = x8 * x8
    b0 = _est8(x2, x4, x8, 0.3989422804014327, -0.06649038006690544, 0.009973557010035817, -0.0011873282154804543, 0.00011543468761615529, -9.444656259503615e-06, 6.659693516316651e-07, -4.122667414862689e-08)
    b1 = _est8(x2, x4, x8, 2.2735298243728065e-09, -1.1301171641619213e-10, 5.1124347902563106e-12, -2.121761474217046e-13, 0.0, 0.0, 0.0, 0.0)
    p = b1 * x16 + b0
    small = y < 0.5
    pos = x >= 0.0
    Phi = (0.5 + x * p) if small else (1.0 - Q)
    a = (0.5 * x + x * (x * p)) if small else (x * (1.0 - Q) if pos else -_scale2k(k, q, (y * h) / w))
    dpos = Phi + y * (_INV_SQRT2PI * E)
    dfar = _scale2k(k, q, m - y * _INV_SQRT2PI)
    dnear = E * (((y - _GELU_Y0) - _GELU_Y0_LO) * _gelu_d1(y * (2.0 / 3.0) - 1.0))
    d = dpos if pos else (dnear if y < 3.0 else dfar)
    return (a if x == x else x), (d if x == x else x)


@njit(inline="always")
def tanh_fast(x):
    """tanh x, ≤ 2 ulp, branch- and call-free (vectorizes on AVX2 and AVX-512); NaN propagates."""
    return _tanh_pair(x)[0]


@njit(inline="always")
def builtin_pair(code, x):
    """(φ(x), φ'(x)) of built-in activation ``code`` (unknown codes give NaN)."""
    if code == TANH:
        return _tanh_pair(x)
    if code == IDENTITY:
        return _identity_pair(x)
    if code == RELU:
        return _relu_pair(x)
    if code == SIGMOID:
        return _sigmoid_pair(x)
    if code == ERF:
        return _erf_pair(x)
    if code == SOFTPLUS:
        return _softplus_pair(x)
    if code == GELU:
        return _gelu_pair(x)
    return math.nan, math.nan


@njit(inline="always")
def phi_dphi(code, x, fns):
    """(φ(x), φ'(x)) for activation ``code``; ``fns`` holds user pairs (φ_0, φ'_0, φ_1, ...)."""
    if code < USER_CODE0:
        return builtin_pair(code, x)
    return user_pair(fns, code - USER_CODE0, x)


def user_pair(fns, slot, x):  # pragma: no cover - replaced by the overload below inside kernels
    """(φ, φ') of user activation ``slot`` from the function table ``fns``."""
    return fns[2 * slot](x), fns[2 * slot + 1](x)


@overload(user_pair, jit_options={"cache": True})
def _user_pair_impl(fns, slot, x):
    # No user activation registered: kernels receive an empty tuple (no first-class
    # functions to unbox on every call, which costs ~1 ms); this branch is then dead code.
    if isinstance(fns, types.BaseTuple) and len(fns) == 0:
        return lambda fns, slot, x: (math.nan, math.nan)
    return lambda fns, slot, x: (fns[2 * slot](x), fns[2 * slot + 1](x))


def _zero(x):  # placeholder filling unused user slots (compiled at the first register: not at import)
    return 0.0


# Block kernels: one plain loop per built-in, NOT inlined, so each compiles once however many
# kernels call it; the loop vectorizes (tests/problem/test_activations_simd.py checks the asm).

@njit
def _identity_block(h, a, p):
    for i in range(h.shape[0]):
        a[i], p[i] = _identity_pair(h[i])


@njit
def _identity_phi_block(h, a):
    for i in range(h.shape[0]):
        a[i] = _identity_pair(h[i])[0]


@njit
def _tanh_block(h, a, p):
    for i in range(h.shape[0]):
        a[i], p[i] = _tanh_pair(h[i])


@njit
def _tanh_phi_block(h, a):
    for i in range(h.shape[0]):
        a[i] = _tanh_pair(h[i])[0]


@njit
def _relu_block(h, a, p):
    for i in range(h.shape[0]):
        a[i], p[i] = _relu_pair(h[i])


@njit
def _relu_phi_block(h, a):
    for i in range(h.shape[0]):
        a[i] = _relu_pair(h[i])[0]


@njit
def _sigmoid_block(h, a, p):
    for i in range(h.shape[0]):
        a[i], p[i] = _sigmoid_pair(h[i])


@njit
def _sigmoid_phi_block(h, a):
    for i in range(h.shape[0]):
        a[i] = _sigmoid_pair(h[i])[0]


@njit
def _erf_block(h, a, p):
    for i in range(h.shape[0]):
        a[i], p[i] = _erf_pair(h[i])


@njit
def _erf_phi_block(h, a):
    for i in range(h.shape[0]):
        a[i] = _erf_pair(h[i])[0]


@njit
def _softplus_block(h, a, p):
    for i in range(h.shape[0]):
        a[i], p[i] = _softplus_pair(h[i])


@njit
def _softplus_phi_block(h, a):
    for i in range(h.shape[0]):
        a[i] = _softplus_pair(h[i])[0]


@njit
def _gelu_block(h, a, p):
    for i in range(h.shape[0]):
        a[i], p[i] = _gelu_pair(h[i])


@njit
def _gelu_phi_block(h, a):
    for i in range(h.shape[0]):
        a[i] = _gelu_pair(h[i])[0]


# Dot-row kernels of the fused one-hidden-layer pass (mfpde.system.kernels._shallow_rows): for
# h_i = x·w_i + c_i, a_i = φ(h_i), p_i = φ'(h_i) and the return value Σ_i a_i u_i, in one loop
# (the pre-activation, φ/φ' and the output's dot product never leave registers between them).
# One per built-in, not inlined, like the block kernels above.

@njit
def _identity_dot_row(x, w, c, u, a, p):
    s = 0.0
    for i in range(w.shape[0]):
        t, d = _identity_pair(x * w[i] + c[i])
        a[i] = t
        p[i] = d
        s += t * u[i]
    return s


@njit
def _tanh_dot_row(x, w, c, u, a, p):
    s = 0.0
    for i in range(w.shape[0]):
        t, d = _tanh_pair(x * w[i] + c[i])
        a[i] = t
        p[i] = d
        s += t * u[i]
    return s


@njit
def _relu_dot_row(x, w, c, u, a, p):
    s = 0.0
    for i in range(w.shape[0]):
        t, d = _relu_pair(x * w[i] + c[i])
        a[i] = t
        p[i] = d
        s += t * u[i]
    return s


@njit
def _sigmoid_dot_row(x, w, c, u, a, p):
    s = 0.0
    for i in range(w.shape[0]):
        t, d = _sigmoid_pair(x * w[i] + c[i])
        a[i] = t
        p[i] = d
        s += t * u[i]
    return s


@njit
def _erf_dot_row(x, w, c, u, a, p):
    s = 0.0
    for i in range(w.shape[0]):
        t, d = _erf_pair(x * w[i] + c[i])
        a[i] = t
        p[i] = d
        s += t * u[i]
    return s


@njit
def _softplus_dot_row(x, w, c, u, a, p):
    s = 0.0
    for i in range(w.shape[0]):
        t, d = _softplus_pair(x * w[i] + c[i])
        a[i] = t
        p[i] = d
        s += t * u[i]
    return s


@njit
def _gelu_dot_row(x, w, c, u, a, p):
    s = 0.0
    for i in range(w.shape[0]):
        t, d = _gelu_pair(x * w[i] + c[i])
        a[i] = t
        p[i] = d
        s += t * u[i]
    return s


@njit
def pair_block(code, h, a, p, fns):
    """a[i] = φ(h[i]), p[i] = φ'(h[i]) for activation ``code`` over 1-D float64 arrays of equal
    length (a, p distinct from h).  Built-ins run their own vectorized block kernel; user codes
    (≥ USER_CODE0) loop over the user pair from ``fns``."""
    if code == TANH:
        _tanh_block(h, a, p)
    elif code == IDENTITY:
        _identity_block(h, a, p)
    elif code == RELU:
        _relu_block(h, a, p)
    elif code == SIGMOID:
        _sigmoid_block(h, a, p)
    elif code == ERF:
        _erf_block(h, a, p)
    elif code == SOFTPLUS:
        _softplus_block(h, a, p)
    elif code == GELU:
        _gelu_block(h, a, p)
    else:
        for i in range(h.shape[0]):
            a[i], p[i] = user_pair(fns, code - USER_CODE0, h[i])


@njit
def phi_block(code, h, a, fns):
    """a[i] = φ(h[i]) for activation ``code`` (φ only; same rules as :func:`pair_block`)."""
    if code == TANH:
        _tanh_phi_block(h, a)
    elif code == IDENTITY:
        _identity_phi_block(h, a)
    elif code == RELU:
        _relu_phi_block(h, a)
    elif code == SIGMOID:
        _sigmoid_phi_block(h, a)
    elif code == ERF:
        _erf_phi_block(h, a)
    elif code == SOFTPLUS:
        _softplus_phi_block(h, a)
    elif code == GELU:
        _gelu_phi_block(h, a)
    else:
        for i in range(h.shape[0]):
            a[i] = user_pair(fns, code - USER_CODE0, h[i])[0]


def _np_erf(x):
    from scipy import special

    return special.erf(x)


def _np_tanh_pair(x):
    x = np.asarray(x, float)
    e = np.exp(-2.0 * np.abs(x))
    return np.tanh(x), 4.0 * e / ((1.0 + e) * (1.0 + e))    # sech², accurate where 1 − t² is 0


def _np_relu_pair(x):
    x = np.asarray(x, float)
    return np.maximum(x, 0.0), np.where(np.isnan(x), x, (x > 0).astype(float))


def _np_sigmoid_pair(x):
    x = np.asarray(x, float)
    e = np.exp(-np.abs(x))
    from scipy import special   # lazily: scipy.special costs 0.15 s at import

    return special.expit(x), e / ((1.0 + e) * (1.0 + e))     # σ' without the cancellation of s(1 − s)


def _np_softplus_pair(x):
    from scipy import special

    return np.logaddexp(0.0, x), special.expit(x)


def _np_gelu_pair(x):
    from scipy import special

    cdf = special.ndtr(x)
    return x * cdf, cdf + x * _INV_SQRT2PI * np.exp(-0.5 * x * x)


@dataclass(frozen=True)
class Activation:
    """A registered activation: its kernel ``code`` and a numpy reference ``pair(x) -> (φ, φ')``."""

    name: str
    code: int
    pair: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    doc: str


_BUILTIN = {
    "identity": Activation("identity", IDENTITY, lambda x: (np.asarray(x, float).copy(), np.ones_like(x, dtype=float)), "φ(x) = x"),
    "tanh": Activation("tanh", TANH, _np_tanh_pair, "φ(x) = tanh x"),
    "relu": Activation("relu", RELU, _np_relu_pair, "φ(x) = max(x, 0), φ'(0) = 0"),
    "sigmoid": Activation("sigmoid", SIGMOID, _np_sigmoid_pair, "φ(x) = 1/(1+e^{-x})"),
    "erf": Activation("erf", ERF, lambda x: (_np_erf(x), _TWO_OVER_SQRTPI * np.exp(-x * x)), "φ(x) = erf x"),
    "softplus": Activation("softplus", SOFTPLUS, _np_softplus_pair, "φ(x) = log(1+e^x)"),
    "gelu": Activation("gelu", GELU, _np_gelu_pair, "φ(x) = x Φ(x) (exact, not the tanh approximation)"),
}
_USER: dict[str, Activation] = {}
_USER_FNS: list = [None] * (2 * MAX_USER)   # filled with compiled _zero at the first register
_ZERO = None                                 # the compiled placeholder


def names() -> list[str]:
    """Names of every registered activation, built-ins first."""
    return list(_BUILTIN) + list(_USER)


def get(name: str, key: str = "activation") -> Activation:
    """Look up an activation by name; unknown names raise ConfigError listing the allowed ones."""
    if not isinstance(name, str):
        raise ConfigError(key, f"expected an activation name (string), got {type(name).__name__}; allowed: {', '.join(names())}")
    act = _BUILTIN.get(name) or _USER.get(name)   # name is a str here: hashable
    if act is None:
        raise ConfigError(key, f"unknown activation {name!r}; allowed: {', '.join(names())}")
    return act


def register(name: str, phi: Callable[[float], float], dphi: Callable[[float], float], doc: str = "") -> Activation:
    """Register a user activation from two scalar functions Numba can compile.

    ``phi`` and ``dphi`` may be plain Python functions using ``math``; they are compiled with
    signature ``float64(float64)``.  Re-registering a name replaces it.  At most
    ``MAX_USER`` user activations exist at once.
    """
    if name in _BUILTIN:
        raise ConfigError("activation", f"{name!r} is a built-in activation and cannot be replaced")
    slot = list(_USER).index(name) if name in _USER else len(_USER)
    if slot >= MAX_USER:
        raise ConfigError("activation", f"at most {MAX_USER} user activations can be registered")
    try:
        cphi = numba.njit(SCALAR_SIG)(getattr(phi, "py_func", phi))
        cdphi = numba.njit(SCALAR_SIG)(getattr(dphi, "py_func", dphi))
    except Exception as exc:  # numba typing errors
        raise ConfigError("activation", f"{name!r}: phi/dphi must be Numba-compilable float -> float functions ({exc.__class__.__name__})") from None
    global _ZERO
    if _ZERO is None:
        _ZERO = numba.njit(SCALAR_SIG, cache=True)(_zero)
        _USER_FNS[:] = [_ZERO] * (2 * MAX_USER)
    _USER_FNS[2 * slot] = cphi
    _USER_FNS[2 * slot + 1] = cdphi
    vphi = np.vectorize(cphi, otypes=[float])
    vdphi = np.vectorize(cdphi, otypes=[float])
    act = Activation(name, USER_CODE0 + slot, lambda x: (vphi(x), vdphi(x)), doc or "user-registered")
    _USER[name] = act
    return act


def user_functions() -> tuple:
    """The function table passed to the kernels: empty while no user activation is
    registered (cheap calls), else the 2·MAX_USER first-class user functions."""
    return tuple(_USER_FNS) if _USER else ()

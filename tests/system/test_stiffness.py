"""Stiffness indicators: power-iteration spectral radius against the dense Jacobian."""
import numpy as np
import pytest

from mfpde.problem import embedding as E
from mfpde.problem import quadrature as qd
from mfpde.problem.data import finite_set
from mfpde.problem.model import Model, Problem, Embedding, Schedules
from mfpde.problem.schedules import Schedule
from mfpde.system.stiffness import assess, rate_ratio, spectral_radius
from mfpde.system.system import System


def tiny(xi=(1.0, 1.0, 1.0)):
    X = np.linspace(-2, 2, 7)[:, None]
    emb = Embedding((qd.gauss_hermite(4), qd.gauss_hermite(3)), E.coordinate(), (E.constant(0.5),), E.coordinate())
    sch = Schedules(tuple(Schedule("constant", x) for x in xi), tuple(Schedule("constant", 1.0) for _ in xi))
    return System(Problem(Model(1, ("tanh", "tanh")), emb, sch, finite_set(X, np.tanh(2 * X))))


def test_power_iteration_finds_the_largest_jacobian_eigenvalue():
    s = tiny((1.0, 30.0, 1.0))
    y = s.y0
    n = y.size
    J = np.empty((n, n))
    for i in range(n):   # dense Jacobian by central differences, independent of the power iteration
        e = np.zeros(n)
        e[i] = 1e-6
        J[:, i] = (s.rhs(0.0, y + e) - s.rhs(0.0, y - e)) / 2e-6
    rho = np.max(np.abs(np.linalg.eigvals(J)))
    assert abs(spectral_radius(s, iters=200) - rho) <= 1e-3 * rho


def test_rate_ratio_and_stability_bounds():
    s = tiny((1.0, 1000.0, 1.0))
    assert rate_ratio(s) == 1000.0
    st = assess(s)
    assert np.isclose(st.stable_dt["euler"] * st.spectral_radius, 2.0)
    assert "stiff" in st.report("dopri5", None) or "adaptive" in st.report("rk4", 10.0)


# ---------------------------------------------------------------- FD against the analytic JVP

def _tiny_l2():
    """The shared tiny problem (tests/tiny.py): L = 2, tanh, 6 trapezoid nodes per layer."""
    import tomllib

    import mfpde
    from tiny import tiny_toml

    return System(mfpde.load(tomllib.loads(tiny_toml("stiff_fd"))).problem)


def _power_vector(s, y, iters):
    """The dominant unit eigenvector by power iteration on the analytic JVP (seeded like
    spectral_radius)."""
    v = np.random.default_rng(0).standard_normal(y.shape)
    v /= np.linalg.norm(v)
    for _ in range(iters):
        Jv = s.jvp(0.0, y, v, method="analytic")
        v = Jv / np.linalg.norm(Jv)
    return v


@pytest.mark.parametrize("make", [lambda: tiny((1.0, 30.0, 1.0)), _tiny_l2], ids=["L1_stiff_output", "L2_tiny"])
def test_fd_radius_agrees_with_the_analytic_radius_within_the_fd_error(make):
    """Central differences with h = ε^(1/3)(1 + ‖y‖) along a unit v give J·v + (h²/6) D³F[v,v,v]
    + rounding (≤ ε·Σ|terms of F|/h per component).  At the dominant eigenvector that perturbs the
    radius by at most the norm of the error, so |ρ_fd − ρ_an| ≤ 4·(h²/6·M₃ + √N·ε·S/h), with M₃
    the third directional derivative (measured by a wide third difference, independent of h) and
    S = ‖F(y)‖_∞ + ρ‖y‖_∞ the size of the terms summed into F (the factor 4 covers the O(h⁴)
    remainder and the estimate of M₃)."""
    from mfpde.system import jvp

    s = make()
    y = s.y0
    iters = 300
    rho_an = spectral_radius(s, iters=iters, method="analytic")
    assert jvp.jvp.signatures          # the analytic path compiled (or loaded) its kernel
    rho_fd = spectral_radius(s, iters=iters, method="fd")
    eps = np.finfo(float).eps
    h = eps ** (1 / 3) * (1.0 + np.linalg.norm(y))
    v = _power_vector(s, y, iters)
    a = 0.05   # F(y + 2a v) − 2F(y + a v) + 2F(y − a v) − F(y − 2a v) = 2a³ D³F[v,v,v] + O(a⁵)
    third = (s.rhs(0.0, y + 2 * a * v) - 2 * s.rhs(0.0, y + a * v) + 2 * s.rhs(0.0, y - a * v)
             - s.rhs(0.0, y - 2 * a * v)) / (2 * a ** 3)
    M3 = float(np.linalg.norm(third))
    S = float(np.max(np.abs(s.rhs(0.0, y)))) + rho_an * float(np.max(np.abs(y)))
    tol = 4.0 * (h * h / 6.0 * M3 + np.sqrt(y.size) * eps * S / h)
    assert rho_an > 0 and abs(rho_fd - rho_an) <= tol, (rho_fd, rho_an, tol)
    assert tol <= 1e-6 * rho_an        # the bound itself is tight enough to mean something


def test_unknown_method_is_one_config_error():
    from mfpde.errors import ConfigError

    with pytest.raises(ConfigError, match="method: must be one of fd, analytic"):
        spectral_radius(tiny(), method="dense")


def test_an_explicit_cli_solve_compiles_no_jvp_kernel(tmp_path):
    """``mfpde solve`` of an explicit (rk4) configuration prints the stiffness report from
    FD products of the RHS: in a fresh process the JVP kernels stay uncompiled (no signature),
    while the RHS kernel it did use has one (so the check can see a compiled kernel)."""
    import subprocess
    import sys

    from tiny import tiny_toml

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_toml("explicit_nojvp"), encoding="utf-8")
    code = ("import sys\nfrom mfpde.cli import main\n"
            f"assert main(['solve', {str(cfg)!r}, '-o', {str(tmp_path / 'o.nc')!r}, '--no-progress']) == 0\n"
            "from mfpde.system import jvp, kernels\n"
            "print('rhs', len(kernels.rhs_py.signatures))\n"
            "print('jvp', sum(len(f.signatures) for f in (jvp.jvp, jvp.linearize, jvp.apply, jvp.phi_3)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split() for line in out.stdout.splitlines() if line.split()[:1] in (["rhs"], ["jvp"]))
    assert "stiffness:" in out.stdout
    assert int(lines["rhs"]) >= 1 and int(lines["jvp"]) == 0, out.stdout

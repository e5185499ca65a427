"""Stiffness indicators: power-iteration spectral radius against the dense Jacobian."""
import numpy as np

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

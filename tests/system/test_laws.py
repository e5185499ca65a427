"""Parameter laws: rule-weighted quantiles against exact quantiles of the initial laws."""
import numpy as np
from scipy import stats

from mfpde.problem import config
from mfpde.system.laws import QUANTILES, weighted_quantiles
from mfpde.solvers import integrate, make
from mfpde.system.system import System


def test_weighted_quantiles_of_a_discrete_law():
    v = np.array([3.0, 1.0, 2.0, 4.0])
    w = np.array([0.1, 0.4, 0.0, 0.5])          # the zero-mass atom never appears
    np.testing.assert_array_equal(weighted_quantiles(v, w, [0.2, 0.4, 0.45, 0.5, 0.9]), [1.0, 1.0, 3.0, 3.0, 4.0])


def test_initial_first_layer_law_matches_its_normal_law():
    """At t = 0 the law of w_1(0, C_1) is the i.i.d. law N(0.5, 1): a fine trapezoid rule
    reproduces its quantiles to within the node spacing (18/(Q-1))."""
    text = config.default_text().replace('[rules]\nlayer_1 = { kind = "gaussian_trapezoid", size = 64 }',
                                         '[rules]\nlayer_1 = { kind = "gaussian_trapezoid", size = 721 }')
    c = config.loads(text)
    s = System(c.problem)
    sol = integrate(s, make("rk4", s, dt=0.1), 0.2)
    ds = sol.to_xarray()
    q0 = ds["law_w_1"].isel(time=0).values
    exact = stats.norm.ppf(QUANTILES)
    assert np.max(np.abs(q0 - exact)) <= 18 / 720 + 1e-12
    assert "law_W_2" in ds and "law_v" in ds and ds["law_w_1"].dims == ("time", "quantile")

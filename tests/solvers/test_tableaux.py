"""The Stepper room's single homes: one tableau type, one step-size controller, one option schema,
explicit checkpoint state, tracker intervals."""
import math

import numpy as np
import pytest

from mfpde.errors import ConfigError
from mfpde.problem import config
from mfpde.solvers import STEPPERS, Callback, integrate, make
from mfpde.solvers.adaptive import EMBEDDED_TABLEAUX
from mfpde.solvers.explicit import TABLEAUX
from mfpde.solvers.implicit import DIRK_TABLEAUX
from mfpde.solvers.stepsize import Controller, accept_step, landing, retry_step
from mfpde.solvers.tableaux import ButcherTableau, order_of, rooted_trees
from mfpde.system.system import System

# (order, embedded order, explicit, fsal) from the literature
KNOWN = {"euler": (1, 0, True, False), "heun": (2, 0, True, False), "midpoint": (2, 0, True, False),
         "rk3": (3, 0, True, False), "rk4": (4, 0, True, False), "dopri5": (5, 4, True, True), "bs32": (3, 2, True, True),
         "backward_euler": (1, 0, False, False), "implicit_midpoint": (2, 0, False, False), "sdirk4": (4, 3, False, False)}
ALL = {**TABLEAUX, **EMBEDDED_TABLEAUX, **DIRK_TABLEAUX}


@pytest.fixture(scope="module")
def system():
    """The default problem on 12 + 12 nodes (168 unknowns)."""
    raw = config.default().raw
    small = {"kind": "gaussian_trapezoid", "size": 12}
    return System(config.from_dict({**raw, "rules": {"layer_1": small, "layer_2": small}}).problem)


def test_the_three_registries_hold_one_tableau_type():
    assert set(ALL) == set(KNOWN) and all(type(tb) is ButcherTableau for tb in ALL.values())
    assert all(tb.name == name for name, tb in ALL.items())


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_derived_orders_and_structure_match_the_literature(name):
    tb = ALL[name]
    order, embedded, explicit, fsal = KNOWN[name]
    assert (tb.order, tb.embedded_order, tb.explicit, tb.fsal) == (order, embedded, explicit, fsal)
    assert tb.diagonally_implicit == (not explicit)
    assert STEPPERS[name].order == order


def test_rooted_tree_counts_and_order_detection():
    assert [len(rooted_trees(n)) for n in range(1, 9)] == [1, 1, 2, 4, 9, 20, 48, 115]
    rk4 = TABLEAUX["rk4"]
    assert order_of(rk4.b, rk4.a) == 4 and order_of(np.array([1.0, 0, 0, 0]), rk4.a) == 1


def test_stiffly_accurate_follows_the_floating_point_row_sum():
    """backward Euler is stiffly accurate; sdirk4's last row equals b, but its row sum c_s = 1 + 2^-50
    (kept bit for bit with the steppers before the one tableau type; see docs/steppers.md)."""
    assert DIRK_TABLEAUX["backward_euler"].stiffly_accurate
    sd = DIRK_TABLEAUX["sdirk4"]
    assert np.array_equal(sd.a[-1], sd.b) and sd.c[-1] != 1.0 and not sd.stiffly_accurate


def test_a_tableau_checks_its_shapes_and_embedded_weights():
    with pytest.raises(ValueError):
        ButcherTableau(np.zeros((2, 2)), np.ones(3), np.zeros(2))
    with pytest.raises(ValueError):
        ButcherTableau.from_rows([[0.0]], [1.0]).e


def test_controller_formulas():
    pi, i = Controller.pi(4).vector(), Controller.integral(3).vector()
    assert landing(0.0, 1.0, 0.3) == (0.3, 0.3, False)
    assert landing(0.9, 1.0, 0.3)[1:] == (1.0, True)
    dt, e = accept_step(0.1, 0.1, 0.5, 1.0, False, False, pi, math.inf)
    assert dt == pytest.approx(0.1 * 0.9 * 0.5 ** (-0.7 / 5)) and e == 0.5
    assert accept_step(0.1, 0.1, 1e-30, 1.0, False, False, pi, math.inf)[0] == pytest.approx(0.09 * 1e4 ** 0.14)  # E ≥ 1e-4
    assert accept_step(0.1, 0.1, 1e-30, 1.0, False, False, i, math.inf)[0] == pytest.approx(0.5)     # growth ≤ 5
    assert accept_step(0.1, 0.1, 1e-30, 1.0, False, True, pi, math.inf)[0] == 0.1                    # not after a rejection
    assert accept_step(0.05, 0.1, 0.3, 1.0, True, False, pi, math.inf) == (0.1, 1.0)                # clipped: proposal kept
    assert accept_step(0.1, 0.1, 0.6, 1.0, False, False, i, math.inf)[0] == 0.1                      # I: h kept in [1, 1.2]
    assert accept_step(0.1, 0.1, 1e-30, 1.0, False, False, i, 0.3)[0] == 0.3                         # dt_max
    assert retry_step(0.1, 4.0, 0.0, 1, i, 0.0, 50) == (pytest.approx(0.1 * 0.9 * 4.0 ** -0.25), False)
    assert retry_step(0.1, math.inf, 0.0, 1, i, 0.0, 50) == (0.025, False)                          # failed: h/4
    assert retry_step(0.1, math.inf, 0.0, 1, pi, 0.0, 50)[0] == pytest.approx(0.02)                 # failed: h/5
    assert retry_step(0.1, 4.0, 0.0, 51, pi, 0.0, 50)[1] and retry_step(0.1, 4.0, 0.0, 1, pi, 0.5, 50)[1]


@pytest.mark.parametrize("name", sorted(STEPPERS))
def test_each_stepper_declares_its_options_once(system, name):
    cls = STEPPERS[name]
    assert cls.options == tuple(cls.schema)
    first = cls.options[0]
    bad = "fast" if cls.schema[first].kind != "choice" else 3.5
    with pytest.raises(ConfigError, match=f"solver.{first}"):
        make(name, system, **({"dt": 0.1} if "dt" in cls.options and first != "dt" else {}), **{first: bad})


def test_config_checks_stepper_options_against_the_stepper_schema():
    raw = config.default().raw
    for stepper, key, value in [("sdirk4", "newton_maxiter", 200), ("backward_euler", "theta_refresh", 1.0),
                                ("dopri5", "max_rejections", 0), ("sdirk4", "linear_solver", "lu")]:
        bad = {**raw, "solver": {**raw["solver"], "stepper": stepper, key: value}}
        with pytest.raises(ConfigError) as err:
            config.from_dict(bad)
        assert err.value.key == f"solver.{key}"
        with pytest.raises(ConfigError) as err2:
            STEPPERS[stepper].check_option(key, value)
        assert str(err2.value) == str(err.value)
    ok = {**raw, "solver": {**raw["solver"], "stepper": "dopri5", "rtol": 0.0, "atol": 1e-9, "dt_max": math.inf}}
    assert dict(config.from_dict(ok).solver.adaptive) == {"rtol": 0.0, "atol": 1e-9, "dt_max": math.inf}


@pytest.mark.parametrize("name, options", [("rk4", {"dt": 0.1}), ("dopri5", {}), ("sdirk4", {}),
                                           ("backward_euler", {"dt": 0.1, "linear_solver": "gmres"}),
                                           ("sdirk4", {"linear_solver": "minres"}), ("sdirk4", {"jacobian": "fd"})])
def test_state_names_what_an_advance_carries_and_restores_it(system, name, options):
    a = make(name, system, **options)
    y = system.y0.copy()
    a.advance(y, 0.0, 0.35, 10**6)
    st = a.state()
    assert set(st) == set(a.persistent)
    assert not any(k in st for k in ("_ynew", "_ytmp", "_fz", "_K", "_ctrl", "_kc", "_mem", "_Zbuf"))   # work buffers
    b = make(name, system, **options)
    b.restore(st)
    y1, y2 = y.copy(), y.copy()
    a.advance(y1, 0.35, 0.8, 10**6)
    b.advance(y2, 0.35, 0.8, 10**6)
    np.testing.assert_array_equal(y1, y2)
    with pytest.raises(ValueError):
        make(name, system, **options).restore({})


def test_a_tracker_runs_at_its_own_interval(system):
    seen, every = [], []
    integrate(system, make("rk4", system, dt=0.05), 2.0, save_every=0.1,
              trackers=[Callback(lambda t, y, s: seen.append(round(t, 9)), interval=0.5),
                        Callback(lambda t, y, s: every.append(t))])
    assert seen == [0.0, 0.5, 1.0, 1.5, 2.0] and len(every) == 21
    seen.clear()
    integrate(system, make("rk4", system, dt=0.05), 1.0, times=[0.3, 0.6, 0.65, 0.7, 1.0],
              trackers=[Callback(lambda t, y, s: seen.append(t), interval=0.25)])
    assert seen == [0.0, 0.3, 0.6, 1.0]          # the first save time at or after 0.25, 0.5, 0.75 (and 1.0)
    with pytest.raises(ConfigError):
        Callback(print, interval=0.0)

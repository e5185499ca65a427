"""Steppers: tableau properties, observed order on the system, save times, blow-up guard."""
import math

import numpy as np
import pytest

from mfpde.problem import embedding as E
from mfpde.problem import quadrature as qd
from mfpde.problem.data import finite_set
from mfpde.errors import BlowUpError, ConfigError
from mfpde.problem.model import Embedding, Model, Problem, Schedules
from mfpde.problem.schedules import Schedule
from mfpde.solvers import STEPPERS, TABLEAUX, Callback, integrate, make, save_times
from mfpde.solvers.explicit import grid_steps
from mfpde.system.system import System


def small_problem(xi=1.0, Q=12, schedules=None):
    X = np.linspace(-2.0, 2.0, 11)[:, None]
    emb = Embedding((qd.gauss_hermite(Q), qd.gauss_hermite(Q)), E.coordinate(), (E.constant(0.5),), E.coordinate())
    sch = schedules or Schedules.constant(2, xi)
    return Problem(Model(1, ("tanh", "tanh")), emb, sch, finite_set(X, np.tanh(2 * X)), probes=X[:3])


@pytest.fixture(scope="module")
def system():
    return System(small_problem())


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_tableau_is_explicit_and_consistent(name):
    tb = TABLEAUX[name]
    assert np.allclose(np.triu(tb.a), 0.0)             # explicit: strictly lower triangular
    assert math.isclose(tb.b.sum(), 1.0, abs_tol=1e-15)  # order ≥ 1
    np.testing.assert_allclose(tb.c, tb.a.sum(axis=1))   # row-sum condition
    if tb.order >= 2:
        assert math.isclose(tb.b @ tb.c, 0.5, abs_tol=1e-15)
    if tb.order >= 3:
        assert math.isclose(tb.b @ tb.c**2, 1 / 3, abs_tol=1e-15)
        assert math.isclose(tb.b @ (tb.a @ tb.c), 1 / 6, abs_tol=1e-15)
    if tb.order >= 4:
        assert math.isclose(tb.b @ tb.c**3, 1 / 4, abs_tol=1e-15)
        assert math.isclose(tb.b @ (tb.c * (tb.a @ tb.c)), 1 / 8, abs_tol=1e-15)
        assert math.isclose(tb.b @ (tb.a @ tb.c**2), 1 / 12, abs_tol=1e-15)
        assert math.isclose(tb.b @ (tb.a @ (tb.a @ tb.c)), 1 / 24, abs_tol=1e-15)


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_observed_order_on_the_system(system, name):
    """Global error at t = 1 against a fine RK4 reference falls like dt^order (±0.2)."""
    ref = integrate(system, make("rk4", system, dt=1 / 1280), 1.0, parameters="final").y
    order = TABLEAUX[name].order
    dts = [1 / 20, 1 / 40, 1 / 80] if order < 4 else [1 / 10, 1 / 20, 1 / 40]
    errs = [np.linalg.norm(integrate(system, make(name, system, dt=dt), 1.0, parameters="final").y - ref) for dt in dts]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(rates - order) <= 0.2), (name, rates)


def test_time_dependent_schedule_order_is_kept():
    """Power-decay schedules are evaluated at stage times: RK4 stays fourth order."""
    sch = Schedules(tuple(Schedule("power", 2.0, 0.5, 1.0) for _ in range(3)), tuple(Schedule("constant", 1.0) for _ in range(3)))
    s = System(small_problem(schedules=sch))
    ref = integrate(s, make("rk4", s, dt=1 / 1280), 1.0, parameters="final").y
    errs = [np.linalg.norm(integrate(s, make("rk4", s, dt=dt), 1.0, parameters="final").y - ref) for dt in (1 / 10, 1 / 20, 1 / 40)]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(rates - 4) <= 0.2), rates


def test_save_times_include_ends_and_are_hit_exactly(system):
    sol = integrate(system, make("rk4", system, dt=0.01), 0.5, times=[0.123, 0.25])
    assert sol.times == [0.0, 0.123, 0.25, 0.5]
    # an off-grid save time is reached by a shorter step: same state as a solve ending there
    direct = integrate(system, make("rk4", system, dt=0.01), 0.123, parameters="final").y
    np.testing.assert_allclose(sol.states[1], direct, rtol=0, atol=1e-15)
    assert len(save_times(1.0, every=0.1)) == 11


def test_grid_steps_snaps_rounding():
    assert grid_steps(0.0, 0.3, 0.1) == (3, 0.0)
    n, rem = grid_steps(0.0, 0.35, 0.1)
    assert n == 3 and math.isclose(rem, 0.05)


def test_max_steps_chunks_do_not_change_the_result(system):
    a = integrate(system, make("heun", system, dt=0.01), 1.0, parameters="final").y
    st = make("heun", system, dt=0.01)
    y = system.y0.copy()
    t = 0.0
    while t < 1.0:
        res = st.advance(y, t, 1.0, 7)
        t = res.t
    np.testing.assert_array_equal(y, a)


def test_blow_up_stops_with_last_good_state_and_message():
    s = System(small_problem(xi=1e6))
    with np.errstate(all="ignore"), pytest.raises(BlowUpError) as exc:
        integrate(s, make("euler", s, dt=0.1, bound=1e6), 100.0, save_every=1.0)
    err = exc.value
    assert "t ≈" in str(err) and err.partial is not None
    last = err.partial.states[-1]
    assert np.all(np.isfinite(last)) and np.linalg.norm(last) <= 1e6
    assert err.partial.status == "blow-up"


def test_unknown_stepper_lists_registered_names(system):
    with pytest.raises(ConfigError) as exc:
        make("rk45x", system, dt=0.1)
    for name in STEPPERS:
        assert name in str(exc.value)
    with pytest.raises(ConfigError):
        make("rk4", system, dt=-1.0)


def test_results_do_not_depend_on_how_steps_are_split_with_time_dependent_rates():
    """Stage times are counted from the segment start, so a power-decay schedule sees the same
    t whether the controller advances 1 step or all steps per call (bit for bit)."""
    sch = Schedules(tuple(Schedule("power", 2.0, 0.3, 1.5) for _ in range(3)), tuple(Schedule("constant", 1.0) for _ in range(3)))
    s = System(small_problem(schedules=sch))
    for name in ("euler", "rk4"):
        one = integrate(s, make(name, s, dt=0.01), 0.77, save_every=0.25, chunk_seconds=1e9).y
        many = integrate(s, make(name, s, dt=0.01), 0.77, save_every=0.25, chunk_seconds=0.0).y
        np.testing.assert_array_equal(one, many)
        st = make(name, s, dt=0.01)
        y = s.y0.copy()
        t = 0.0
        while t < 0.77:
            t = st.advance(y, t, 0.77, 3).t
        np.testing.assert_array_equal(y, integrate(s, make(name, s, dt=0.01), 0.77, parameters="final").y)


# ----------------------------------------------------------------- a fixed step is never changed silently
FIXED_STEP = [(name, "dt") for name in sorted(TABLEAUX)] + [("backward_euler", "dt"), ("implicit_midpoint", "dt"),
                                                            ("dopri5", "fixed_dt"), ("bs32", "fixed_dt")]


@pytest.mark.parametrize("name, key", FIXED_STEP)
@pytest.mark.parametrize("dt, grid", [(1e9, {}), (1e8, {}), (10.0, {"save_every": 0.1}), (0.2, {"times": [0.3, 0.45]}),
                                      (0.5 * (1 + 1e-6), {"save_every": 0.5})])
def test_fixed_step_longer_than_a_save_interval_is_refused_before_any_work(system, name, key, dt, grid):
    """A step of dt would never be taken there (every step would be the shorter interval): refused
    with a ConfigError naming the option, dt and the interval, before the stepper or a tracker runs."""
    st = make(name, system, **{key: dt})
    seen = []
    with pytest.raises(ConfigError) as exc:
        integrate(system, st, 1.0, trackers=[Callback(lambda t, y, s: seen.append(t))], **grid)
    assert exc.value.key == f"solver.{key}"
    assert format(dt, ".12g") in str(exc.value) and "save interval" in str(exc.value)
    assert seen == [] and st.stats["steps"] == 0 and st.stats["rhs_evals"] == 0


@pytest.mark.parametrize("name, key", [("euler", "dt"), ("rk4", "dt"), ("backward_euler", "dt"), ("implicit_midpoint", "dt")])
def test_a_direct_advance_over_less_than_one_step_is_refused_and_leaves_the_state(system, name, key):
    st = make(name, system, **{key: 1.0})
    y = system.y0.copy()
    with pytest.raises(ConfigError) as exc:
        st.advance(y, 0.0, 0.5, 100)
    assert exc.value.key == f"solver.{key}"
    np.testing.assert_array_equal(y, system.y0)


def test_fixed_step_equal_to_the_save_interval_up_to_rounding_takes_exactly_those_steps(system):
    st = make("rk4", system, dt=0.1)
    sol = integrate(system, st, 1.0, save_every=0.1)
    assert st.stats["steps"] == 10 and len(sol.times) == 11
    st = make("euler", system, dt=0.3)   # 0.3, 0.3, 0.3 and one shorter step of 0.1 onto t_end (documented)
    integrate(system, st, 1.0)
    assert st.stats["steps"] == 4
    # dt exactly the interval up to rounding of the save grid (0.7 - 0.6000000000000001 < 0.1)
    st = make("euler", system, dt=0.1)
    integrate(system, st, 0.7, times=[0.1 * k for k in range(7)])
    assert st.stats["steps"] == 7


TINY_TOML = """\
name = "tiny"
[model]
input_dim = 1
hidden = ["tanh"]
[rules]
default = { kind = "gaussian_trapezoid", size = 8 }
[data.train]
kind = "arrays"
x = [-1.0, 0.0, 1.0]
y = [0.5, -0.2, 0.3]
[solver]
stepper = "rk4"
dt = 0.05
t_end = 0.5
save_every = 0.1
"""


@pytest.mark.parametrize("dt", ["1e9", "1e8", "10", "0.2"])
def test_cli_solve_refuses_a_step_longer_than_the_save_interval_with_exit_2(tmp_path, capsys, dt):
    from mfpde.cli import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML, encoding="utf-8")
    out = tmp_path / "tiny.nc"
    assert main(["solve", str(cfg), "--dt", dt, "-o", str(out), "-q", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mfpde: error: solver.dt: ") and "save interval" in err[0]
    assert not out.exists()


def test_blown_up_solve_has_a_strictly_increasing_time_axis_and_keeps_the_last_good_state(system):
    """The first step after a save time blows up: the last good state is the one saved there, so
    no time is repeated; a blow-up between save times adds the last good state at its own time."""
    for parameters in ("all", "none"):
        with np.errstate(all="ignore"), pytest.raises(BlowUpError) as exc:
            integrate(system, make("rk4", system, dt=0.01, bound=1e-3), 1.0, save_every=0.5, parameters=parameters)
        p = exc.value.partial
        assert p.times == [0.0] and p.state_times == [0.0]
        np.testing.assert_array_equal(p.states[-1], system.y0)
        assert all(len(v) == 1 for v in p.observables.values())
    s = System(small_problem(xi=1e6))
    with np.errstate(all="ignore"), pytest.raises(BlowUpError) as exc:
        integrate(s, make("euler", s, dt=0.1, bound=1e6), 100.0, save_every=1.0)
    p = exc.value.partial
    assert np.all(np.diff(p.times) > 0) and p.state_times[-1] == p.times[-1] == exc.value.time
    assert all(len(v) == len(p.times) for v in p.observables.values())


@pytest.mark.parametrize("call, key", [
    (lambda s: make(["rk4"], s, dt=0.1), "solver.stepper"),
    (lambda s: make({"name": "rk4"}, s, dt=0.1), "solver.stepper"),
    (lambda s: make("rk4", s, dt=0.1, bound=[1.0]), "solver.bound"),
    (lambda s: make("backward_euler", s, dt=0.1, linear_solver=["dense"]), "solver.linear_solver"),
    (lambda s: make("sdirk4", s, jacobian={"fd": True}), "solver.jacobian"),
    (lambda s: integrate(s, make("rk4", s, dt=0.1), "1.0"), "solver.t_end"),
    (lambda s: integrate(s, make("rk4", s, dt=0.1), 1.0, save_every=[0.5]), "solver.save_every"),
    (lambda s: integrate(s, make("rk4", s, dt=0.1), 1.0, times=[[0.5]]), "solver.save_times"),
    (lambda s: integrate(s, make("rk4", s, dt=0.1), 1.0, parameters=["all"]), "output.parameters"),
    (lambda s: integrate(s, make("rk4", s, dt=0.1), 1.0, y0=np.zeros(3)), "y0"),
])
def test_a_list_table_or_string_where_a_name_or_number_is_expected_is_a_config_error(system, call, key):
    with pytest.raises(ConfigError) as exc:
        call(system)
    assert exc.value.key == key

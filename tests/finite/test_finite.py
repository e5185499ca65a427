"""Finite-width engine, run store and the limit-versus-width comparison."""
from dataclasses import replace

import numpy as np
import pytest

from mfpde.analysis import compare

from mfpde.problem import config

from mfpde.problem import embedding as E

from mfpde.problem import quadrature as qd

from mfpde.store import runs
from mfpde.problem.data import GaussianTeacherLaw, SingleIndexTanh, finite_set
from mfpde.finite.ensemble import run_ensemble
from mfpde.errors import ConfigError, StoreError
from mfpde.finite.network import network_problem, run_seed, sample_index_law
from mfpde.finite.sgd import train
from mfpde.problem.model import Embedding, Model, Problem, Schedules
from mfpde.solvers import integrate, make
from mfpde.system.system import System

SMALL = """
name = "small"
[model]
input_dim = 1
hidden = ["sigmoid", "tanh"]
[rules]
default = { kind = "gaussian_trapezoid", size = 48 }
[init]
W_2 = { kind = "constant", value = 0.5, noise_std = 1.0 }
[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 2.0 }
rule = { kind = "gaussian_trapezoid", size = 48 }
[probes]
kind = "grid"
low = -3.0
high = 3.0
size = 13
[solver]
stepper = "euler"
dt = 0.05
t_end = 1.0
save_every = 0.25
[sgd]
widths = [64, 128, 256, 512, 1024]
replicas = 32
statistics = false
"""


def finite_problem(loss="squared", d=2, K=1, M=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, d))
    Y = np.sign(rng.standard_normal((M, K))) if loss == "logistic" else rng.standard_normal((M, K))
    emb = Embedding((qd.gauss_hermite(3, dim=d), qd.gauss_hermite(4)), E.coordinate(),
                    (E.constant(0.3, noise_std=0.7),), E.affine(0.0, 1.0, 0) if K == 1 else E.constant(0.5))
    return Problem(Model(d, ("tanh", "gelu"), K, (True, False), loss=loss), emb, Schedules.constant(2, 0.8, 0.4),
                   finite_set(X, Y), probes=X[:4])


def test_sgd_step_is_minus_multiplier_times_fd_gradient_of_the_batch_risk():
    """One online step of width (5, 7): Δθ = −ε ξ (fan-in × fan-out) ∂R_batch/∂θ (SPEC §1), by FD."""
    p = finite_problem()
    law = GaussianTeacherLaw(2, SingleIndexTanh([1.0, -0.5], 1.5))
    ss = np.random.SeedSequence(7)
    run = train(p, (5, 7), mode="online", batch=3, lr=1e-3, t_end=1e-3, law=law, seed=ss, statistics=False)
    # rebuild the same network and batch from the same seed sequence
    init_ss, data_ss = np.random.SeedSequence(7).spawn(2)
    init_rng = np.random.default_rng(init_ss)
    net = System(network_problem(p, (5, 7), init_rng))
    from mfpde.finite.network import initial_network_state

    y0 = initial_network_state(net, init_rng)
    batch = law.sample(np.random.default_rng(data_ss), 3)
    rho = np.full(3, 1 / 3)

    def risk(y):
        return net.evaluate(y, batch.X, batch.Y, rho)[0]

    grad = np.empty_like(y0)
    for i in range(y0.size):   # Richardson-extrapolated central differences
        e = np.zeros_like(y0)
        h = 1e-3 * max(1.0, abs(y0[i]))
        e[i] = h
        d1 = (risk(y0 + e) - risk(y0 - e)) / (2 * h)
        d2 = (risk(y0 + e / 2) - risk(y0 - e / 2)) / h
        grad[i] = (4 * d2 - d1) / 3
    mult = np.empty_like(y0)
    for name, block in net.views(mult).items():
        block[...] = {"w_1": 5 * 0.8, "b_1": 5 * 0.4, "W_2": 5 * 7 * 0.8, "v": 7 * 0.8}[name]
    net.y0[:] = y0
    run_y = net.y0 - 1e-3 * mult * grad
    # the loss after the step, recomputed from the FD step, equals the recorded one
    after = net.evaluate(run_y, p.train.X, p.train.Y, p.train.weights)[0]
    assert abs(after - run.array("loss_train")[-1]) <= 1e-9 * abs(after)


def test_full_batch_gd_equals_solver_euler_on_the_network_nodes():
    """Same numbers, two entry points: finite.train(mode=full) and integrate(euler) on the sampled nodes."""
    c = config.loads(SMALL)
    p = c.problem
    run = train(p, 64, mode="full", lr=0.05, t_end=1.0, record_times=[0, 0.5, 1.0], seed=np.random.SeedSequence(3),
                statistics=False)
    init_ss, _ = np.random.SeedSequence(3).spawn(2)
    rng = np.random.default_rng(init_ss)
    s = System(network_problem(p, 64, rng))
    from mfpde.finite.network import initial_network_state

    y0 = initial_network_state(s, rng)
    sol = integrate(s, make("euler", s, dt=0.05), 1.0, times=[0.5], y0=y0)
    np.testing.assert_array_equal(run.array("loss_train"), sol.observable("loss_train"))
    np.testing.assert_array_equal(run.array("yhat_probe"), sol.observable("yhat_probe"))


def test_runs_are_reproducible_bit_for_bit_and_replicas_differ():
    p = config.loads(SMALL).problem
    law = GaussianTeacherLaw(1, SingleIndexTanh([1.0], 2.0))
    a = train(p, 32, mode="online", batch=4, lr=0.05, t_end=0.5, replica=1, law=law)
    b = train(p, 32, mode="online", batch=4, lr=0.05, t_end=0.5, replica=1, law=law)
    c = train(p, 32, mode="online", batch=4, lr=0.05, t_end=0.5, replica=2, law=law)
    for k in a.observables:
        np.testing.assert_array_equal(a.array(k), b.array(k))
    assert not np.array_equal(a.array("yhat_probe"), c.array("yhat_probe"))
    assert run_seed(p, 32, 1).spawn_key == (32, 1) == run_seed(p, (32, 32), 1).spawn_key
    # runs that differ in any layer's width never share streams (here: the same last width)
    assert run_seed(p, (64, 32), 1).spawn_key == (64, 32, 1) != run_seed(p, (128, 32), 1).spawn_key


def test_network_initialization_follows_the_iid_laws():
    """w_1 ~ N(0, 1) (index law of a standard Gauss rule), W_2 − m_2 ~ N(0, noise_std²)."""
    p = config.loads(SMALL).problem
    rng = np.random.default_rng(11)
    s = System(network_problem(p, 400, rng))
    from mfpde.finite.network import initial_network_state

    V = s.views(initial_network_state(s, rng))
    n = 400
    assert abs(V["w_1"].mean()) < 5 / np.sqrt(n) and abs(V["w_1"].std() - 1) < 5 / np.sqrt(2 * n)
    W = V["W_2"]
    assert abs(W.mean() - 0.5) < 5 / n and abs(W.std() - 1.0) < 5 / np.sqrt(2 * n * n)
    u = sample_index_law(qd.gauss_legendre(4, -1.0, 3.0), rng, 10000)
    assert u.min() >= -1 and u.max() <= 3 and abs(u.mean() - 1.0) < 0.05


def test_minibatch_needs_an_equal_weight_training_set():
    p = config.loads(SMALL).problem
    with pytest.raises(ConfigError, match="sgd.mode"):
        train(p, 8, mode="minibatch", batch=4, lr=0.05, t_end=0.1)


def test_minibatch_mode_records_statistics():
    p = finite_problem(M=12)
    run = train(p, 6, mode="minibatch", batch=4, lr=0.01, t_end=0.03, statistics=True)
    assert run.status == "completed" and len(run.times) == 2
    assert "singular_values_1" in run.observables and "quantiles_W_2" in run.observables


def test_fit_rate_recovers_a_known_power_law():
    n = np.array([64, 128, 256, 512, 1024.0])
    rng = np.random.default_rng(0)
    err = 3.0 * n**-0.5 * np.exp(0.02 * rng.standard_normal(5))
    r, lo, hi = compare.fit_rate(n, err)
    assert abs(r - 0.5) < 0.05 and lo < 0.5 < hi


def test_run_store_appends_resumes_and_reads_back(tmp_path):
    c = config.loads(SMALL.replace("t_end = 1.0", "t_end = 0.25").replace("save_every = 0.25", "save_every = 0.125")
                     .replace("dt = 0.05", "dt = 0.025"))   # lr = dt: the save times are on the step grid
    out = tmp_path / "runs.h5"
    run_ensemble(c, out, widths=(8, 16), replicas=2, say=lambda *a: None, progress=False)
    ds = runs.read(out)
    assert dict(ds.sizes)["width"] == 2 and dict(ds.sizes)["replica"] == 2 and dict(ds.sizes)["time"] == 3
    assert list(ds["yhat_probe"].dims) == ["width", "replica", "time", "probe", "output"]
    before = ds["loss_train"].values.copy()
    msgs = []
    run_ensemble(c, out, widths=(8, 16, 32), replicas=2, say=msgs.append, progress=False)
    assert any("4 runs already complete" in m for m in msgs)
    ds2 = runs.read(out)
    np.testing.assert_array_equal(ds2["loss_train"].values[:2], before)
    assert dict(ds2.sizes)["width"] == 3
    # a store for another configuration is refused rather than mixed
    other = config.loads(SMALL.replace("size = 13", "size = 7"))
    with pytest.raises(StoreError, match="different configuration"):
        run_ensemble(other, out, widths=(8,), replicas=1, say=lambda *a: None, progress=False)


def test_truncated_run_store_gives_a_clear_error(tmp_path):
    c = config.loads(SMALL.replace("t_end = 1.0", "t_end = 0.25"))
    out = tmp_path / "runs.h5"
    run_ensemble(c, out, widths=(8,), replicas=1, say=lambda *a: None, progress=False)
    data = out.read_bytes()
    bad = tmp_path / "bad.h5"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="bad.h5"):
        runs.read(bad)


@pytest.mark.slow
def test_width_convergence_rate_is_one_half(tmp_path):
    """Widths 64…1024, 32 replicas: the sup-time RMS output error falls like n^{-1/2} (SPEC §2).

    The loss error mixes the O(n^{-1/2}) fluctuation (whose coefficient shrinks as the
    residual ŷ − y shrinks) with an O(1/n) bias, so its pre-asymptotic fitted rate lies
    between 1/2 and 1: only a lower bound is asserted for it.
    """
    c = config.loads(SMALL)
    s = System(c.problem)
    limit = integrate(s, make("euler", s, dt=0.05), 1.0, save_every=0.25, parameters="none").to_xarray()
    out = run_ensemble(c, tmp_path / "runs.h5", say=lambda *a: None, progress=False)
    res = compare.compare(limit, runs.read(out))
    a = res.attrs
    assert 0.35 <= a["output_error_rate"] <= 0.65, compare.table(res)
    assert a["output_error_rate_ci_low"] <= 0.5 <= a["output_error_rate_ci_high"], compare.table(res)
    assert a["loss_error_rate"] >= 0.35, compare.table(res)


def test_coupling_error_starts_at_zero_and_falls_like_inverse_sqrt_width():
    """Tracers = the network's own features: θ_n(0) = θ*(0), and |θ_n − θ*| ~ n^{-1/2} (SPEC §4)."""
    c = config.loads(SMALL)
    widths = [64, 256, 1024]
    errs = []
    for n in widths:
        runs = [train(c.problem, n, lr=0.05, t_end=0.5, record_times=[0.0, 0.25, 0.5], replica=r,
                      statistics=False, coupling=True) for r in range(3)]
        for r in runs:
            for k in ("coupling_w_1", "coupling_W_2", "coupling_v"):
                assert r.array(k)[0] == 0.0
        errs.append(np.mean([max(r.array(k)[-1] for k in ("coupling_w_1", "coupling_W_2", "coupling_v")) for r in runs]))
    rate = -np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert 0.35 <= rate <= 0.65, (errs, rate)


def test_compare_reports_the_coupling_error(tmp_path):
    c = config.loads(SMALL.replace("t_end = 1.0", "t_end = 0.25").replace("save_every = 0.25", "save_every = 0.125")
                     .replace("dt = 0.05", "dt = 0.025"))   # lr = dt: the save times are on the step grid
    s = System(c.problem)
    limit = integrate(s, make("euler", s, dt=0.025), 0.25, save_every=0.125, parameters="none").to_xarray()
    out = run_ensemble(c, tmp_path / "runs.h5", widths=(16, 32, 64), replicas=2, say=lambda *a: None,
                       progress=False, coupling=True)
    res = compare.compare(limit, runs.read(out))
    assert "coupling_error_mean" in res and np.all(res["coupling_error_mean"].values > 0)
    assert "coupling_error" in compare.table(res)


# ----------------------------------------------------------------- SGD times lie on the step grid t = k·lr
@pytest.mark.parametrize("lr, t_end, record", [(3.0, 1.0, None), (0.3, 1.0, None), (0.1, 1.0, [0.0, 0.25, 1.0]),
                                               (0.05, 1.0, [0.5, 0.51])])
def test_lr_that_does_not_divide_t_end_or_a_record_time_is_refused(lr, t_end, record):
    """SGD's states exist only at t = k·lr: a t_end or record time off that grid (beyond rounding)
    is refused with a ConfigError naming sgd.lr and the fitting learning rates, before any work."""
    from mfpde.finite.sgd import check_arguments

    p = finite_problem()
    with pytest.raises(ConfigError) as exc:
        check_arguments(p, 4, mode="full", batch=1, lr=lr, t_end=t_end, law=None, record_times=record)
    assert exc.value.key == "sgd.lr" and f"{lr:g}" in str(exc.value) and "--lr" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        train(p, 4, lr=lr, t_end=t_end, record_times=record, statistics=False)
    assert exc.value.key == "sgd.lr"


def test_lr_that_divides_t_end_and_record_times_up_to_rounding_is_accepted():
    p = finite_problem()
    run = train(p, 4, lr=0.1, t_end=0.7, record_times=[0.1 * k for k in range(8)], statistics=False)
    assert run.stats["steps"] == 7 and len(run.times) == 8
    run = train(p, 4, lr=0.01, t_end=0.03, statistics=False)   # 0.03 / 0.01 = 2.9999999999999996
    assert run.stats["steps"] == 3 and run.times[-1] == pytest.approx(0.03)


def test_cli_sgd_refuses_lr_longer_than_t_end_before_creating_the_store(tmp_path, capsys):
    from mfpde.cli import main

    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL, encoding="utf-8")
    out = tmp_path / "runs.h5"
    assert main(["sgd", str(cfg), "--lr", "3.0", "--widths", "4", "--replicas", "1", "-o", str(out), "-q",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mfpde: error: sgd.lr: ") and "--lr" in err[0]
    assert not out.exists()


def test_blown_up_sgd_run_has_a_strictly_increasing_time_axis_and_keeps_the_last_good_state():
    """Blow-up in the first step after a record time: its state is the last good one and is not
    recorded twice; a blow-up between record times records the last good state at its own time."""
    from mfpde.errors import BlowUpError

    p = finite_problem()
    ref = train(p, 4, lr=0.05, t_end=1.0, record_times=[0.05 * k for k in range(21)], snapshots=True, statistics=False)
    norms = np.array([np.linalg.norm(y) for y in ref.states])
    bound = float(norms[:6].max()) * (1 + 1e-12)
    k = int(np.argmax(norms > bound))         # the first step past the bound (k ≥ 6; 0 if none)
    assert k >= 6
    t_last = (k - 1) * 0.05
    for record in ([0.0, t_last, 1.0], [0.0, 1.0], [0.0]):   # right after a record time; between records
        with np.errstate(all="ignore"), pytest.raises(BlowUpError) as exc:
            train(p, 4, lr=0.05, t_end=1.0, record_times=record, bound=bound, snapshots=True, statistics=False)
        run = exc.value.partial
        assert np.all(np.diff(run.times) > 0), run.times
        assert run.times[-1] == pytest.approx(t_last) and run.status == "blow-up"
        assert all(len(v) == len(run.times) for v in run.observables.values())
        np.testing.assert_array_equal(run.states[-1], ref.states[k - 1])


@pytest.mark.parametrize("kw, key", [({"widths": 4.0}, "sgd.widths"), ({"mode": ["full"]}, "sgd.mode"),
                                     ({"bound": [1.0]}, "solver.bound"), ({"record_times": [[0.5]]}, "record_times"),
                                     ({"record_times": 0.5}, "record_times"), ({"replica": "a"}, "replica")])
def test_a_list_or_string_where_a_width_name_or_number_is_expected_is_a_config_error(kw, key):
    kw = {"widths": 4, "lr": 0.05, "t_end": 1.0, "statistics": False, **kw}
    with pytest.raises(ConfigError) as exc:
        train(finite_problem(), kw.pop("widths"), **kw)
    assert exc.value.key == key


# ----------------------------------------------------------------- fixed features, noise laws, options
def test_fixed_nodes_give_a_layer_those_features_and_keep_every_other_draw():
    """network_problem(fixed_nodes={2: nodes}): layer 2 has exactly those features (weights 1/n),
    layer 1 and the middle weights' noise are those of the unfixed network from the same seed."""
    from mfpde.finite.network import initial_network_state, network_noise

    p = finite_problem()
    nodes = np.linspace(-1.0, 1.0, 7)[:, None]
    free = network_problem(p, (5, 7), np.random.default_rng(4))
    rng = np.random.default_rng(4)
    fixed = network_problem(p, (5, 7), rng, fixed_nodes={2: nodes})
    np.testing.assert_array_equal(fixed.embedding.rules[1].nodes, nodes)
    np.testing.assert_array_equal(fixed.embedding.rules[1].weights, np.full(7, 1 / 7))
    np.testing.assert_array_equal(fixed.embedding.rules[0].nodes, free.embedding.rules[0].nodes)
    rng_free = np.random.default_rng(4)
    network_problem(p, (5, 7), rng_free)
    a = System(fixed).views(initial_network_state(System(fixed), rng, network_noise(p)))
    b = System(free).views(initial_network_state(System(free), rng_free, network_noise(p)))
    np.testing.assert_array_equal(a["W_2"] - a["W_2"].mean(), b["W_2"] - b["W_2"].mean())   # the same noise draws
    # train passes them through, and a rule's nodes serve as well as an array
    r1 = train(p, (5, 7), lr=0.1, t_end=0.2, seed=np.random.SeedSequence(2), fixed_nodes={2: nodes}, statistics=False)
    r2 = train(p, (5, 7), lr=0.1, t_end=0.2, seed=np.random.SeedSequence(2), statistics=False,
               fixed_nodes={2: qd.user(nodes, np.full(7, 1 / 7))})
    np.testing.assert_array_equal(r1.nodes[1], nodes)
    np.testing.assert_array_equal(r1.array("loss_train"), r2.array("loss_train"))
    for bad, key in (({3: nodes}, "fixed_nodes"), ({2: nodes[:6]}, "fixed_nodes[2]"), ([nodes], "fixed_nodes")):
        with pytest.raises(ConfigError) as exc:
            network_problem(p, (5, 7), np.random.default_rng(0), fixed_nodes=bad)
        assert exc.value.key == key


def test_network_noise_draws_each_weight_from_the_limit_noise_rule():
    """A network of a limit with an ω rule (rules.omega_2) draws W_2's noise from that rule's law;
    without the NoiseLaws such a network is refused rather than given standard normal noise."""
    from mfpde.finite.network import NoiseLaw, initial_network_state, network_noise

    p = finite_problem()
    two_point = qd.user(np.array([[-1.0], [1.0]]), np.array([0.5, 0.5]))
    p = replace(p, embedding=replace(p.embedding, edge_rules=(two_point,)))
    laws = network_noise(p)
    assert laws == (NoiseLaw(two_point),)
    net = System(network_problem(p, (20, 30), np.random.default_rng(1)))
    np.testing.assert_array_equal(net.edge_nodes[0], [0.0])   # the network's noise index: one node at ω = 0
    np.testing.assert_array_equal(net.edge_weights[0], [1.0])
    W = net.views(initial_network_state(net, np.random.default_rng(2), laws))["W_2"]
    assert set(np.round((W - 0.3) / 0.7, 12).ravel()) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="network_noise"):
        initial_network_state(net, np.random.default_rng(2))


def test_train_options_object_equals_its_keywords():
    from mfpde.finite.sgd import TRAIN_KEYWORDS, TrainOptions

    p = config.loads(SMALL).problem
    opts = TrainOptions(lr=0.05, t_end=0.5, record_times=[0.0, 0.25, 0.5], statistics=False)
    assert opts.record_times == (0.0, 0.25, 0.5) and opts.record_steps() == [0, 5, 10]
    a = train(p, 16, opts, replica=1)
    b = train(p, 16, lr=0.05, t_end=0.5, record_times=[0.0, 0.25, 0.5], statistics=False, replica=1)
    c = train(p, 16, TrainOptions(lr=0.1, statistics=False), lr=0.05, t_end=0.5, record_times=[0.0, 0.25, 0.5],
              replica=1)   # keywords replace fields of the options
    for k in a.observables:
        np.testing.assert_array_equal(a.array(k), b.array(k))
        np.testing.assert_array_equal(a.array(k), c.array(k))
    with pytest.raises(TypeError, match="t_ennd"):
        train(p, 16, t_ennd=1.0)
    assert {"mode", "lr", "snapshots", "checkpoint", "fixed_nodes"} <= set(TRAIN_KEYWORDS)
    cfg = config.loads(SMALL)
    o = TrainOptions.from_config(cfg, lr=0.025)
    assert (o.mode, o.lr, o.t_end, o.record_times, o.statistics) == ("full", 0.025, 1.0, (0.0, 0.25, 0.5, 0.75, 1.0),
                                                                     False)

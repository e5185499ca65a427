"""High-dimensional inputs (SPEC §7, issue 17; docs/high_dimension.md): the preset's reduced
problem and its finite twin, and d-dimensional networks approaching the reduced limit.

The full study (d = 10, 100, 1000, several widths, rates) is ``validation/high_dimension.py``.
"""
import copy
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats

import mfpde
from mfpde import finite
from mfpde.problem.data import make_law

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "examples" / "single_index_d1000.toml"


def preset(d=None, data_rule=None, **solver):
    raw = tomllib.loads(PRESET.read_text(encoding="utf-8"))
    if d is not None:
        raw["model"]["input_dim"] = raw["data"]["train"]["d"] = d
    if data_rule is not None:
        raw["data"]["train"]["rule"]["size"] = data_rule
    raw["solver"].update(solver)
    raw["output"]["parameters"] = "none"
    return mfpde.load(raw, base_dir=PRESET.parent, source=f"{PRESET.name} (test)")


def test_preset_reduces_to_k1_and_its_finite_twin_has_d1000_weights_and_inputs():
    c = mfpde.load(str(PRESET))
    red = c.problem.reduction
    assert red is not None and red.kind == "isotropic_gaussian" and (red.d, red.k) == (1000, 1)
    assert c.problem.model.input_dim == 2                       # data and w_1 columns (z, r) and (a, β)
    # the reduced data rule: r ~ χ_999 on 8 Gauss nodes in r integrates E r, E r² exactly (degree ≤ 15),
    # so only rounding remains; z ~ N(0, 1) on a sinh-mapped trapezoid whose nodes end at |z| = 6
    # (not polynomial-exact: its error on E z² is at most about the tail 2∫_6^∞ z² φ(z) dz = 7.5e-8)
    X, w = c.problem.train.X, c.problem.train.weights
    assert math.isclose(w.sum(), 1.0, rel_tol=1e-12)
    assert abs(np.max(np.abs(X[:, 0])) - 6.0) < 0.5
    assert abs(w @ X[:, 0] ** 2 - 1.0) < 7.5e-8
    assert math.isclose(w @ X[:, 1] ** 2, 999.0, rel_tol=1e-10)          # E r² = d − k
    e_r = math.sqrt(2.0) * math.exp(special.gammaln(500.0) - special.gammaln(499.5))   # E χ_999
    assert math.isclose(w @ X[:, 1], e_r, rel_tol=1e-10)
    np.testing.assert_allclose(c.problem.train.Y[:, 0], np.tanh(2.0 * X[:, 0]), rtol=0, atol=1e-15)

    twin = c.finite_problem
    assert twin.reduction is None and twin.model.input_dim == 1000
    Xs = twin.train.X
    assert Xs.shape == (4096, 1000)                              # [sgd] sample default
    # x ~ N(0, I): the sample variance of 4096·1000 coordinates is 1 within 5 SE = 5·√(2/4096000)
    assert abs(Xs.var() - 1.0) < 5 * math.sqrt(2.0 / Xs.size)
    np.testing.assert_allclose(twin.train.Y[:, 0], np.tanh(2.0 * Xs[:, 0]), rtol=0, atol=1e-15)
    run = finite.train(twin, 8, mode="full", lr=0.05, t_end=0.05, statistics=False, snapshots=True)
    w1 = run.system.views(run.states[0])["w_1"]
    assert w1.shape == (8, 1000)
    # w_1 ~ N(0, I/d): d·(sample variance of the 8000 entries) = 1 within 5 SE = 5·√(2/8000)
    assert abs(1000 * np.mean(w1**2) - 1.0) < 5 * math.sqrt(2.0 / w1.size)


@pytest.mark.slow
def test_d10_networks_approach_the_reduced_limit_at_rate_one_half():
    """Online SGD of real 10-dimensional networks of widths 64 and 512 against the reduced limit.

    e_n = sup over t ≤ 2 of the RMS over the probes of ŷ_n − ŷ_∞ (one value per replica).  To
    leading order e_n = n^{−1/2} E with E independent of n (SPEC §2), so the ratio of the replica
    means ē_64 / ē_512 estimates √(512/64) = √8.  Tolerance on ln(ē_64/ē_512) − ln √8:
    * replica noise: t_{0.995, R_512−1} × se, se² = (s_64/ē_64)² + (s_512/ē_512)² (s: standard
      errors of the means over R_64 = 32 and R_512 = 16 replicas; the delta method for a log
      ratio), a two-sided level of at most 1 % (the smaller group's degrees of freedom);
    * plus the online-SGD noise, which does not fall with n: about that of a width B/ε = 5120
      network (SPEC §1), it lowers the ratio by at most a factor √((1 + 64/5120)/(1 + 512/5120)),
      |ln| ≤ 0.042.  The limit is Euler with Δt = ε, as SGD, so no time error enters; its z rule
      has 48 Gauss–Hermite nodes (ŷ within 2e−4 of 64 nodes, validation/high_dimension.py), so
      its rule error is < 1 % of the width-512 error.
    """
    T, every, eps, B = 2.0, 0.25, 0.05, 256
    R = {64: 32, 512: 16}     # a run's error has a relative spread ≈ 0.6: se(ln ratio) ≈ 0.19, so a ratio of 1
    #                           (no convergence) lies > 5 se from √8 and fails
    c = preset(10, data_rule=48, t_end=T, save_every=every, dt=eps)
    sol = mfpde.solve(c, stepper="euler", dt=eps, t_end=T, save_every=every, parameters="none", progress=False,
                      estimate=False)
    lim = np.asarray(sol.observable("yhat_probe"), float)                 # [T, P, K]
    law = make_law(c.raw["data"]["train"], "data.train")
    times = [i * every for i in range(int(round(T / every)) + 1)]
    err = {}
    for n in (64, 512):
        e = []
        for r in range(R[n]):
            run = finite.train(c.finite_problem, n, mode="online", batch=B, lr=eps, t_end=T, record_times=times,
                               replica=r, law=law, statistics=False)
            d = run.array("yhat_probe") - lim
            e.append(np.max(np.sqrt(np.mean(np.sum(d**2, axis=-1), axis=-1))))
        err[n] = np.array(e)
    m = {n: e.mean() for n, e in err.items()}
    s = {n: e.std(ddof=1) / math.sqrt(R[n]) for n, e in err.items()}
    se = math.sqrt((s[64] / m[64]) ** 2 + (s[512] / m[512]) ** 2)
    tol = stats.t.ppf(0.995, R[512] - 1) * se + 0.5 * math.log((1 + 512 / 5120) / (1 + 64 / 5120))
    gap = math.log(m[64] / m[512]) - 0.5 * math.log(8.0)
    assert abs(gap) <= tol, f"ē_64/ē_512 = {m[64] / m[512]:.3f}, expected √8 = {math.sqrt(8):.3f} within ×e^±{tol:.3f}"

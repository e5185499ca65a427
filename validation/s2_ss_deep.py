"""Study 2 — Sirignano–Spiliopoulos deep: two hidden layers, N_1 ≫ N_2, limits taken in sequence.

Setting (SPEC §5, ``examples/ss_deep.toml``): L = 2 (sigmoid, tanh), squared loss, teacher
y = tanh(2x), x ~ N(0, 1); w_1^0 ~ N(0.5, 1), v^0 ~ N(0, 1), W_2^0 ≡ m_2 = 0.5.  Online SGD,
B = 1, ε = 1/N_1: SS's per-layer rates (C: N_2/N_1, W^1: 1, W^2: N_2) are SPEC §1's
multipliers times ε = 1/N_1, so with t = k/N_1 their SGD is this system with ξ ≡ 1.

Their limit is sequential: N_1 → ∞ at fixed N_2, then N_2 → ∞.  Both steps are computed:

* the **intermediate limit** at fixed N_2: layer 1 on its quadrature rule (64 trapezoid nodes)
  and layer 2 on the N_2 output features v^0_j *of that replica* (a user rule with weights
  1/N_2).  Networks of width (N_1, N_2) are trained with exactly those N_2 layer-2 features
  (``fixed_nodes`` of mfpde.finite.train) and compared with it;
* the **full limit** (64 × 64 nodes), against which the intermediate limits are compared for
  N_2 = 16 … 256.

W_2^0 is deterministic (a point-mass i.i.d. law) on purpose: with random W_2^0 the N_1 → ∞
limit at finite N_2 keeps each first-layer neuron's noise row (N_2 numbers) as an index,
which the reduced system of SPEC §4 does not represent.

Expected: network − intermediate limit = O(N_1^{−1/2}) (width and √ε online noise, ε = 1/N_1)
at each N_2; intermediate − full limit = O(N_2^{−1/2}).

Criteria (stated before running; quick mode widens each band by twice the replica-noise SE):
* rate in N_1 of the sup-time RMS output error (network vs intermediate limit) in [0.35, 0.65],
  separately for N_2 = 16 and N_2 = 64;
* rate in N_2 of the error of the intermediate limit vs the full limit in [0.35, 0.65].
Reported, not asserted: the network's error vs the full limit for every (N_1, N_2) — it falls
with N_1 and then levels off at the N_2 floor.
"""
from __future__ import annotations

import numpy as np

from mfpde.store import runs
from mfpde.problem.data import make_law
from mfpde.finite.network import config_entropy
from mfpde.problem.quadrature import user
from validation import common

TITLE = "SS-deep: two hidden layers, N_1 → ∞ then N_2 → ∞"
PAPER = "Sirignano & Spiliopoulos, Mean field analysis of deep neural networks"
SIZES = {
    "full": {"N1": [256, 512, 1024, 2048, 4096], "N2": [16, 64], "replicas": 24,
             "N2_limits": [16, 32, 64, 128, 256, 512], "limit_replicas": 48, "t_end": 2.0},
    "quick": {"N1": [128, 512, 2048], "N2": [16, 64], "replicas": 16,
              "N2_limits": [16, 64, 256], "limit_replicas": 24, "t_end": 1.0},
}


def layer2_problem(problem, nodes):
    """The problem with hidden layer 2 on the given N_2 features (equal weights)."""
    from dataclasses import replace

    rules = (problem.embedding.rules[0], user(nodes, np.full(len(nodes), 1.0 / len(nodes))))
    return replace(problem, embedding=replace(problem.embedding, rules=rules))


def features(entropy: int, N2: int, r: int) -> np.ndarray:
    """The N_2 output features v^0_j ~ N(0, 1) of replica r."""
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(0, N2, r))).standard_normal((N2, 1))


def run(ctx: common.Context) -> None:
    from mfpde.solvers import integrate, make
    from mfpde.system.system import System

    sz = SIZES["quick" if ctx.quick else "full"]
    T, every = sz["t_end"], 0.5
    c = common.load("ss_deep")
    ent = config_entropy(c.problem)
    full, _, _ = common.solve_limit(c, ctx.path("limit.nc"), stepper="rk4", dt=0.01, t_end=T, save_every=every)
    yfull = full["yhat_probe"].values
    law = make_law(c.raw["data"]["train"], "data.train")

    def inter(N2, r):
        s = System(layer2_problem(c.problem, features(ent, N2, r)))
        return integrate(s, make("rk4", s, dt=0.01), T, save_every=every, parameters="none").observable("yhat_probe")

    # (b) intermediate limits vs the full limit, N_2 ↑
    e2 = np.array([[common.sup_rms(inter(N2, r), yfull) for r in range(sz["limit_replicas"])] for N2 in sz["N2_limits"]])
    m2, s2 = common.per_width(e2)
    ctx.tables["intermediate_vs_full"] = common.rows_from(sz["N2_limits"], m2, s2)
    ctx.say(common.table_text(ctx.tables["intermediate_vs_full"], "N_2 error"))
    # (a) networks vs their intermediate limit, N_1 ↑ at fixed N_2
    errA, errF = {}, {}
    for N2 in sz["N2"]:
        eA = np.full((len(sz["N1"]), sz["replicas"]), np.nan)
        eF = np.full_like(eA, np.nan)
        for r in range(sz["replicas"]):
            nodes = features(ent, N2, r)
            for i, N1 in enumerate(sz["N1"]):
                store = ctx.path(f"runs_N1_{N1}_N2_{N2}.h5")
                common.ensemble(c, store, [(N1, N2)], 1, mode="online", batch=1, lr=1.0 / N1, t_end=T,
                                every=every, law=law, append=r > 0, say=lambda *a: None,
                                seed=lambda n, rr: np.random.SeedSequence(ent, spawn_key=(n[0], n[1], rr)),
                                replica_offset=r, fixed_nodes={2: nodes})
        for i, N1 in enumerate(sz["N1"]):
            ens = runs.read(ctx.path(f"runs_N1_{N1}_N2_{N2}.h5"))
            yh = ens["yhat_probe"].values[0]               # [R, T, P, K]
            for r in range(sz["replicas"]):
                eA[i, r] = common.sup_rms(yh[r], inter_cache(ctx, N2, r, inter))
                eF[i, r] = common.sup_rms(yh[r], yfull)
        errA[N2], errF[N2] = eA, eF
        mA, sA = common.per_width(eA)
        ctx.tables[f"network_vs_intermediate_N2_{N2}"] = common.rows_from(sz["N1"], mA, sA)
        mF, sF = common.per_width(eF)
        ctx.tables[f"network_vs_full_N2_{N2}"] = common.rows_from(sz["N1"], mF, sF)
        ctx.say(f"  N_2 = {N2}: network vs intermediate limit (N_1 column = width)")
        ctx.say(common.table_text(ctx.tables[f"network_vs_intermediate_N2_{N2}"], "N_1 error"))
        ctx.say(f"  N_2 = {N2}: network vs full limit")
        ctx.say(common.table_text(ctx.tables[f"network_vs_full_N2_{N2}"], "error"))
    rates = {}
    for N2 in sz["N2"]:
        mA, sA = common.per_width(errA[N2])
        rates[N2] = common.rate_check(ctx, f"N1_rate_at_N2_{N2}", sz["N1"], mA, sA)
    rate2 = common.rate_check(ctx, "N2_rate_intermediate_vs_full", sz["N2_limits"], m2, s2)

    plt = common.pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for N2, mk in zip(sz["N2"], "os"):
        mA, sA = common.per_width(errA[N2])
        common.error_panel(ax[0], sz["N1"], mA, sA, f"vs intermediate limit, $N_2$ = {N2}", rates[N2]["rate"], marker=mk)
        mF, sF = common.per_width(errF[N2])
        ax[0].errorbar(sz["N1"], mF, yerr=sF, marker=mk, ls="--", capsize=3, alpha=0.6, label=f"vs full limit, $N_2$ = {N2}")
    mA0 = common.per_width(errA[sz["N2"][0]])[0]
    common.guide(ax[0], sz["N1"], mA0[0])
    common.loglog(ax[0], "$N_1$ (ε = 1/$N_1$)")
    ax[0].set_title("networks, online SGD B = 1")
    common.error_panel(ax[1], sz["N2_limits"], m2, s2, "intermediate vs full limit", rate2["rate"])
    common.guide(ax[1], sz["N2_limits"], m2[0])
    common.loglog(ax[1], "$N_2$ ($N_1$ = ∞)")
    common.save(fig, ctx.figure("errors"))


_CACHE: dict = {}


def inter_cache(ctx, N2, r, inter):
    key = (id(ctx), N2, r)
    if key not in _CACHE:
        _CACHE[key] = inter(N2, r)
    return _CACHE[key]

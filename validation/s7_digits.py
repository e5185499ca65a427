"""Study 7 — real data: scikit-learn's 8 × 8 digits, the Pham–Nguyen protocol transposed.

Setting: the 1797 bundled 8 × 8 digits (``sklearn.datasets.load_digits``, needs the
``datasets`` extra), two groups of classes, y = +1 for digits 0–4 and y = −1 for 5–9;
100 training points drawn at random (seed 0), the other 1697 are the test set; pixel values
0…16 scaled to [−1, 1] and a constant 1 appended (d = 65).  Two hidden tanh layers, identity
output, Huber loss (δ = 1); W_1 ~ N(0, 1/(d_pixels + 1)) = N(0, 1/65) entrywise,
W_2 ~ N(0.1, 1) i.i.d., W_3 = v ~ N(0.1, 1); full-batch GD with ε = 7e−3 (time t = kε).
The limit is the reduced i.i.d. system (SPEC §4, L = 2): the first-layer index u_1 = w_1^0
∈ R^65 on a Monte Carlo rule (high input dimension), the output features v^0 on Gauss–Hermite
(32 nodes), stepped by Euler with Δt = ε; a second Monte Carlo rule of the same size with
another seed gives the limit's own error (their difference).

Note: tanh is odd and W_1 is centred, so E φ(h_1) = 0 and the leading O(n^{−1/2}) output
fluctuation cancels at t = 0 (docs/runs.md); it reappears once training breaks the symmetry,
and the sup over time is taken over the whole run.  The protocol is kept as specified.

Measured and reported: train/test Huber loss and test classification error at the final time
for every width and for the limit; N × (variance of ŷ across replicas, mean over 24 test
probes) against time for every width — it should collapse onto one curve; the sup-time RMS
output error against the limit with its fitted rate.

Criteria (stated before running; quick mode widens each band by twice the replica-noise SE):
* the replica standard deviation of ŷ at the final time (root of the probe-mean variance)
  falls like N^{−1/2}: rate in [0.35, 0.65] (equivalently N × variance is flat);
* output error against the limit: rate in [0.35, 0.65].
"""
from __future__ import annotations

import math

import numpy as np

from mfpde.analysis import compare as cmp
from mfpde.store import runs
from validation import common

TITLE = "Real data: 8×8 digits, two hidden tanh layers, Huber loss (Pham–Nguyen protocol)"
PAPER = "Pham & Nguyen (2021), Global convergence of three-layer neural networks in the mean field regime (protocol)"
SIZES = {
    "full": {"widths": [50, 100, 200, 400, 800], "replicas": 8, "t_end": 7.0, "every": 0.35, "mc": 8192},
    "quick": {"widths": [50, 100, 200, 400], "replicas": 8, "t_end": 3.5, "every": 0.35, "mc": 2048},
}
EPS = 7e-3
N_TRAIN = 100
N_PROBES = 24


def digits_data(folder):
    """Write train.npz / test.npz (x in [−1, 1]^64 plus a constant 1; y ∈ {−1, 1}); returns the probes."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("study 'digits' needs scikit-learn: pip install 'mfpde[datasets]' "
                          "(or .venv/bin/pip install -c constraints.txt scikit-learn)") from None
    d = load_digits()
    X = d.data / 8.0 - 1.0
    X = np.hstack([X, np.ones((len(X), 1))])
    Y = np.where(d.target <= 4, 1.0, -1.0)[:, None]
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(X))
    tr, te = perm[:N_TRAIN], perm[N_TRAIN:]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", x=X[tr], y=Y[tr])
    np.savez(folder / "test.npz", x=X[te], y=Y[te])
    return X[te[:N_PROBES]], int(np.sum(Y[tr] > 0))


def _config(folder, probes, mc, seed, t_end, every):
    """The study configuration with this Monte-Carlo rule (size, seed), times and probe points.

    Whole-number probe coordinates are given as integers, as the study's TOML text wrote them
    (``%.17g``) before it became overrides: the configuration, and with it the networks'
    seeds (:func:`mfpde.finite.network.config_entropy`), stay those of the recorded results.
    """
    pts = [[int(v) if float(v).is_integer() else float(v) for v in row] for row in probes]
    return common.load("digits", {"probes": pts, "iid.rules.layer_1.size": mc, "iid.rules.layer_1.seed": seed,
                                  "solver.t_end": t_end, "solver.save_every": every}, base=folder)


def run(ctx: common.Context) -> None:
    sz = SIZES["quick" if ctx.quick else "full"]
    T, every = sz["t_end"], sz["every"]
    folder = ctx.path("data")
    probes, n_pos = digits_data(folder)
    ctx.extra["train_positive"] = n_pos
    c = _config(folder, probes, sz["mc"], 1, T, every)
    c2 = _config(folder, probes, sz["mc"], 2, T, every)
    limit, _, _ = common.solve_limit(c, ctx.path("limit.nc"), stepper="euler", dt=EPS, t_end=T, save_every=every)
    limit2, _, _ = common.solve_limit(c2, ctx.path("limit_seed2.nc"), stepper="euler", dt=EPS, t_end=T,
                                      save_every=every)
    lim_err = float(common.sup_rms(limit["yhat_probe"].values, limit2["yhat_probe"].values))
    ctx.extra["limit_mc_error_sup_rms_output"] = lim_err
    ens = runs.read(common.ensemble(c, ctx.path("runs.h5"), sz["widths"], sz["replicas"], lr=EPS, t_end=T,
                                    every=every, say=ctx.say))
    res = cmp.compare(limit, ens)
    ctx.say(cmp.table(res))
    w = res["width"].values
    ctx.tables["output_error"] = common.compare_table(res, "output_error")
    ctx.tables["loss_error"] = common.compare_table(res, "loss_error")
    r_out = common.rate_check(ctx, "output_error_rate", w, res["output_error_mean"].values,
                              res["output_error_sem"].values)
    # final-time losses and errors
    final = []
    for i, n in enumerate(w):
        row = {"width": int(n)}
        for k in ("loss_train", "loss_test", "error_train", "error_test"):
            v = ens[k].values[i, :, -1]
            row[k] = float(np.nanmean(v))
            row[k + "_sem"] = float(np.nanstd(v, ddof=1) / math.sqrt(np.sum(np.isfinite(v))))
        final.append(row)
    final.append({"width": "limit", **{k: float(limit[k].values[-1]) for k in ("loss_train", "loss_test",
                                                                                   "error_train", "error_test")},
                  **{k + "_seed2": float(limit2[k].values[-1]) for k in ("loss_test", "error_test")}})
    ctx.tables["final_time"] = final
    for row in final:
        ctx.say(f"  width {row['width']}: train loss {row['loss_train']:.4f}, test loss {row['loss_test']:.4f}, "
                f"test error {row['error_test']:.4f}")
    # N × variance across replicas
    yh = ens["yhat_probe"].values[..., 0]                                    # [W, R, T, P]
    var = np.nanvar(yh, axis=1, ddof=1).mean(axis=-1)                        # [W, T]
    R = yh.shape[1]
    std_final = np.sqrt(var[:, -1])
    std_sem = std_final / math.sqrt(2 * (R - 1))
    ctx.tables["replica_std_final"] = common.rows_from(w, std_final, std_sem)
    ctx.tables["n_times_variance"] = {"time": [float(t) for t in ens["time"].values],
                                      **{str(int(n)): [float(x) for x in n * var[i]] for i, n in enumerate(w)}}
    ctx.say(common.table_text(ctx.tables["replica_std_final"], "replica std"))
    r_var = common.rate_check(ctx, "replica_std_rate_final_time", w, std_final, std_sem,
                              expected="1/2 (N × variance flat in N)")

    plt = common.pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    common.time_panel(ax[0], limit, ens, "loss_test", ylabel="test Huber loss")
    ax[0].set_title("digits 0–4 vs 5–9, 100 training points")
    t = ens["time"].values
    for i, n in enumerate(w):
        ax[1].plot(t, n * var[i], marker=".", label=f"N = {int(n)}")
    ax[1].set_xlabel("t"), ax[1].set_ylabel("N × Var$_{replicas}$(ŷ), mean over probes"), ax[1].legend(fontsize=7)
    ax[1].set_title(f"collapse (std rate {r_var['rate']:.2f})")
    common.error_panel(ax[2], w, res["output_error_mean"].values, res["output_error_sem"].values, "output error",
                       r_out["rate"])
    ax[2].axhline(lim_err, color="gray", ls="--", label="limit MC error (two seeds)")
    common.guide(ax[2], w, res["output_error_mean"].values[0])
    common.loglog(ax[2])
    common.save(fig, ctx.figure("errors"))

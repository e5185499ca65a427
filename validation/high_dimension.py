"""High-dimensional inputs (SPEC §7, issue 17): finite networks in d dimensions against the
reduced limit, and the d-sweep of the limit.  Not one of the pre-registered studies of
``python -m validation`` (it has their shape — ``TITLE``, ``PAPER``, ``SIZES``, ``run(ctx)`` —
so registering it in ``validation.runner.STUDIES`` is one line).

**Networks (``run``).**  The preset ``examples/single_index_d1000.toml`` (single-index teacher
y = tanh(2 x_1), x ~ N(0, I_d), two tanh hidden layers, w_1 ~ N(0, I/d) i.i.d., W_2 ~ N(0, 1)
i.i.d., v ~ N(0, 1)) at d = 10, 100, 1000.  The limit is the reduced system (SPEC §7: the first
layer indexed by (a⁰, β⁰), the data by (z, r), ζ per pair), stepped by **Euler with Δt = ε**:
online SGD is Euler on noisy gradients, so the O(ε) time error cancels between the two (the
RK4 limit is solved too and sup_t |L_euler − L_rk4| reported).  The limit uses the preset's rules unchanged (z: a sinh-mapped
trapezoid of 24 nodes; Gauss–Hermite converges slowly on tanh(2z), whose poles sit at z = ±iπ/4:
16 nodes left ½E tanh²(2z) off by 0.0105); its own error, ≈ 1e-5 (error_estimate_loss), is far below
the network errors.  The networks do not use the rule (they train on samples of the law).  The
d-dimensional networks (``Config.finite_problem``, the unreduced twin), trained by online SGD
(fresh batch of B = 256 points of the law every step, ε = solver.dt = 0.05) at widths
64 … 512, 20 seeds each (10 gave pooled rates 0.44 and 0.34 in two runs: replica noise; docs/high_dimension.md); compared with ``mfpde.analysis.compare``.  Widths 64 … 512 rather
than 128 … 1024: the replica spread, not the width, limits the rate's accuracy (a run's
sup-time error has a relative spread of 0.4–0.6 across seeds, presumably because one random
mode dominates it: the shift of the run's escape from the initial plateau), and at a fixed budget the smaller widths allow
2.5× the replicas; the online noise also stays further below the width error.

The rate is fitted to the **sup-time RMS error of ŷ on the probes** (x = (s, 0, …, 0)), not to
the loss: a network's loss_train is evaluated on a d-dimensional sample of ``[sgd] sample`` =
4096 points (the limit's on the quadrature rule), whose sampling error ~ 4096^{−1/2} × the
spread of the per-point loss does not fall with n; the loss error is reported, its rate too,
but it flattens at large n.  Two further n-independent errors are small at these sizes: the
online-SGD noise (about that of a width B/ε = 5120 network, SPEC §1) and the limit's own error
(its ``error_estimate_loss``, checked by compare).

Criteria (stated before running): the pooled rate of the ŷ-probe error (one slope for all d,
an intercept per d) is in [0.35, 0.65]; for each d, its own rate is in [0.35, 0.65] widened
by twice its replica-noise SE (quick mode: the pooled band too).
Reported: per d, error mean ± SEM and × √n per width, the ŷ and loss rates with their 95 % CI
and replica-noise SE, the limit's wall time.  Figure ``docs/figures/high_dimension_sgd.png``.

**d-sweep (``sweep``).**  ``mfpde sweep examples/sweep_dimension.toml`` (zip over
model.input_dim and data.train.d: d = 10, 100, 1000, 10 000), collected; the wall time of each
solve (direct ``mfpde.solve`` calls, warm, without the error estimate, best of 2) and the time
to learn t_learn(d) = the first t with loss_train ≤ loss_train(0)/10 (linear interpolation of
log loss between save times), with the slope of t_learn against ln d.  Figure
``docs/figures/high_dimension.png``.  Run::

    NUMBA_NUM_THREADS=1 .venv/bin/python -m validation.high_dimension [networks] [sweep] [--quick] [--force]

Results in ``validation/results/high_dimension.json``; run stores are reused when their
configuration and settings are unchanged (``--force`` retrains).  Imports numpy, mfpde,
matplotlib (lazily).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import mfpde
from mfpde import checks
from mfpde.analysis import compare as cmp
from mfpde.problem import config as cfg_mod
from mfpde.problem.data import make_law
from mfpde.store import runs
from validation import common

TITLE = "High-dimensional inputs: d-dimensional networks vs the reduced limit (SPEC §7)"
PAPER = "mfpde issue 17 (the isotropic-Gaussian reduction); Ben Arous, Gheissari & Jagannath (2021) for t_learn ~ log d"
PRESET = common.ROOT / "examples" / "single_index_d1000.toml"
SWEEP = common.ROOT / "examples" / "sweep_dimension.toml"
RESULTS = common.DEFAULT_OUT / "high_dimension.json"
FIG_SGD = "high_dimension_sgd.png"
FIG_SWEEP = "high_dimension.png"
SIZES = {
    "full": {"dims": [10, 100, 1000], "widths": [64, 128, 256, 512], "replicas": 20, "t_end": 10.0, "every": 0.5,
             "batch": 256},
    "quick": {"dims": [10, 100], "widths": [64, 128, 256], "replicas": 4, "t_end": 4.0, "every": 0.5, "batch": 256},
}
BAND = common.BAND   # (0.35, 0.65): accepted band of a rate whose theoretical value is 1/2
Z = 2.0              # a single d's band is widened by Z × its replica-noise SE (the pooled rate's is not)
DATA_RULE = None     # the preset's z rule (a sinh-mapped trapezoid: accurate, see above)
LEARNED = 0.1        # t_learn: the first t with loss_train <= LEARNED * loss_train(0)


# ---------------------------------------------------------------------------- configurations
def preset_raw() -> dict:
    return checks.parse_toml(cfg_mod.read_text(PRESET), str(PRESET))


def config(d: int, *, t_end: float | None = None, every: float | None = None, data_rule: int | None = None,
           raw: dict | None = None):
    """The preset at input dimension ``d`` (model.input_dim and data.train.d together), with
    ``[solver]`` t_end / save_every and the size of the z rule (data.train.rule) replaced when
    given, and no per-node parameters stored."""
    r = copy.deepcopy(raw if raw is not None else preset_raw())
    if data_rule is not None:
        common.override(r, "data.train.rule.size", int(data_rule))
    common.override(r, "model.input_dim", int(d))
    common.override(r, "data.train.d", int(d))
    if t_end is not None:
        common.override(r, "solver.t_end", float(t_end))
    if every is not None:
        common.override(r, "solver.save_every", float(every))
    common.override(r, "output.parameters", "none")
    return mfpde.load(r, base_dir=PRESET.parent, source=f"{PRESET.name} at d = {d}")


def _key(c, **settings) -> str:
    text = cfg_mod.to_toml(c.raw) + json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_ensemble(ctx: common.Context, c, name: str, *, force: bool, **kw) -> Path:
    """common.ensemble into ``name``.h5, reused when ``name``.key holds the same configuration
    and settings (runs are seeded from them, so a rerun would train the same networks)."""
    store, keyf = ctx.path(f"{name}.h5"), ctx.path(f"{name}.key")
    settings = {k: v for k, v in kw.items() if k not in ("law", "say")}
    key = _key(c, **settings)
    if not force and store.exists() and keyf.exists() and keyf.read_text().strip() == key:
        ctx.say(f"  {store.name}: reused (same configuration and settings; --force retrains)")
        return store
    keyf.unlink(missing_ok=True)
    common.ensemble(c, store, **kw)
    keyf.write_text(key + "\n")
    return store


# ---------------------------------------------------------------------------- networks vs limit
def run(ctx: common.Context, force: bool = False) -> None:
    """Networks at every d against the reduced limit; records the rate checks and the table."""
    sz = SIZES["quick" if ctx.quick else "full"]
    T, every, B = sz["t_end"], sz["every"], sz["batch"]
    per_d, fits = {}, []
    for d in sz["dims"]:
        c = config(d, t_end=T, every=every, data_rule=DATA_RULE)
        eps = float(c.sgd.lr or c.solver.dt)
        ctx.say(f"-- d = {d}: {c.problem.reduction.to_dict()}, ε = {eps:g}, B = {B}")
        t0 = time.perf_counter()
        limit, sol, _ = common.solve_limit(c, ctx.path(f"limit_d{d}.nc"), stepper="euler", dt=eps, t_end=T,
                                           save_every=every, parameters="none")
        t_limit = time.perf_counter() - t0
        rk4 = mfpde.solve(c, stepper="rk4", dt=eps, t_end=T, save_every=every, parameters="none", progress=False,
                          estimate=False)
        t_err = float(np.max(np.abs(np.asarray(rk4.observable("loss_train")) - limit["loss_train"].values)))
        law = make_law(c.raw["data"]["train"], "data.train")
        store = cached_ensemble(ctx, c, f"runs_d{d}", force=force, widths=sz["widths"], replicas=sz["replicas"],
                                mode="online", batch=B, lr=eps, t_end=T, every=every, law=law, statistics=False,
                                say=ctx.say)
        ens = runs.read(store)
        res = cmp.compare(limit, ens, f"limit_d{d}.nc", store.name, warn=lambda m: ctx.say(f"  note: {m}"))
        ctx.say(cmp.table(res))
        n, m, sem = res["width"].values, res["output_error_mean"].values, res["output_error_sem"].values
        r, lo, hi = cmp.fit_rate(n.astype(float), m)
        se = common.rate_noise_se(n, m, sem)
        ok = ctx.check(f"yhat_probe_error_rate_d{d}", r, BAND[0] - Z * se, BAND[1] + Z * se, ci=(lo, hi),
                       expected=f"1/2 (band {BAND} widened by {Z:g} × the replica-noise SE {se:.3f})")
        rY = {"rate": r, "ci": [lo, hi], "noise_se": se, "passed": ok}
        fits.append((n, m, sem))
        rL = cmp.fit_rate(res["width"].values.astype(float), res["loss_error_mean"].values)
        per_d[d] = {"limit_seconds": round(t_limit, 2), "euler_vs_rk4_loss": t_err,
                    "limit_error_estimate_loss": float(res.attrs["limit_error_estimate_loss"]),
                    "yhat_rate": rY["rate"], "yhat_rate_ci": rY["ci"], "yhat_rate_noise_se": rY["noise_se"],
                    "loss_rate": rL[0], "loss_rate_ci": [rL[1], rL[2]],
                    "loss_rate_noise_se": common.rate_noise_se(res["width"].values, res["loss_error_mean"].values,
                                                               res["loss_error_sem"].values),
                    "yhat_error": common.compare_table(res, "output_error"),
                    "loss_error": common.compare_table(res, "loss_error"),
                    "limit_loss": limit["loss_train"].values.tolist(), "time": limit["time"].values.tolist(),
                    "runs_loss_mean": np.nanmean(ens["loss_train"].values, axis=1).tolist()}
        ctx.say(f"  d = {d}: ŷ rate {rY['rate']:.3f} (95% CI [{rY['ci'][0]:.3f}, {rY['ci'][1]:.3f}], "
                f"noise SE {rY['noise_se']:.3f}); loss rate {rL[0]:.3f}; Euler vs RK4 {t_err:.1e}; limit {t_limit:.1f} s")
    rate, se = pooled_rate(fits)
    ctx.check("yhat_probe_error_rate_pooled", rate, BAND[0], BAND[1], slack=Z * se,
              expected=f"1/2 (one slope for every d, an intercept per d; replica-noise SE {se:.3f})")
    ctx.extra.update(pooled_yhat_rate=rate, pooled_yhat_rate_noise_se=se)
    ctx.say(f"  pooled ŷ rate over d = {', '.join(map(str, per_d))}: {rate:.3f} ± {se:.3f} (replica-noise SE)")
    ctx.tables["networks"] = {str(d): v for d, v in per_d.items()}
    ctx.extra["widths"], ctx.extra["replicas"], ctx.extra["t_end"] = sz["widths"], sz["replicas"], T
    figure_networks(ctx, per_d)


def pooled_rate(fits) -> tuple[float, float]:
    """The rate r of err ≈ C_d n^{−r} fitted to several (n, mean, sem) series at once (one slope,
    one intercept per series: least squares on log err), and its replica-noise standard error
    (delta method, as :func:`validation.common.rate_noise_se`)."""
    sxy = sxx = var = 0.0
    for n, m, sem in fits:
        x = np.log(np.asarray(n, float))
        y = np.log(np.asarray(m, float))
        dx = x - x.mean()
        sxy += float(np.sum(dx * (y - y.mean())))
        sxx += float(np.sum(dx**2))
        var += float(np.sum(dx**2 * (np.asarray(sem, float) / np.asarray(m, float)) ** 2))
    return -sxy / sxx, math.sqrt(var) / sxx


def figure_networks(ctx: common.Context, per_d: dict) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.9))
    dmax = max(per_d)
    p = per_d[dmax]
    t = np.asarray(p["time"])
    for i, row in enumerate(p["yhat_error"]):
        ax[0].plot(t, p["runs_loss_mean"][i], alpha=0.8, label=f"n = {row['width']}")
    ax[0].plot(t, p["limit_loss"], "k--", lw=2, label="reduced limit")
    ax[0].set_xlabel("t"), ax[0].set_ylabel("train loss"), ax[0].set_title(f"d = {dmax}: online SGD, B = 256")
    ax[0].legend(fontsize=7)
    for k, (d, mk) in enumerate(zip(per_d, "osd^v")):
        col = f"C{k}"
        rows = per_d[d]["yhat_error"]
        n = np.array([r["width"] for r in rows], float)
        m = np.array([r["mean"] for r in rows])
        s = np.array([r["sem"] for r in rows])
        ax[1].errorbar(n, m, yerr=s, marker=mk, color=col, capsize=3,
                       label=f"d = {d} (rate {per_d[d]['yhat_rate']:.2f} ± {per_d[d]['yhat_rate_noise_se']:.2f})")
        ax[2].errorbar(n, m * np.sqrt(n), yerr=s * np.sqrt(n), marker=mk, color=col, capsize=3, label=f"ŷ, d = {d}")
        lrows = per_d[d]["loss_error"]
        ax[2].plot(n, [r["mean"] * math.sqrt(r["width"]) for r in lrows], marker=mk, color=col, ls=":", alpha=0.6,
                   mfc="none", label=f"loss, d = {d}")
    n0 = np.array([r["width"] for r in per_d[dmax]["yhat_error"]], float)
    common.guide(ax[1], n0, per_d[dmax]["yhat_error"][0]["mean"])
    common.loglog(ax[1], "width n", "sup-time RMS ŷ error on the probes")
    ax[1].set_title("networks vs the reduced limit")
    ax[2].set_xscale("log"), ax[2].set_xlabel("width n"), ax[2].set_ylabel("error × √n")
    ax[2].set_title("ŷ (solid) and loss (dotted) error × √n"), ax[2].legend(fontsize=6, ncol=2)
    ax[2].set_ylim(bottom=0)
    from matplotlib.ticker import NullLocator

    for a_ in ax[1:]:
        a_.xaxis.set_minor_locator(NullLocator())
        a_.set_xticks(n0, [str(int(v)) for v in n0])
    path = ctx.figures / FIG_SGD
    ctx.figures.mkdir(parents=True, exist_ok=True)
    common.save(fig, path)
    ctx.files.append(str(path))


# ---------------------------------------------------------------------------- the d-sweep
def t_learn(t, loss, fraction: float = LEARNED) -> float:
    """The first t with loss ≤ fraction · loss(0): log loss interpolated linearly between save
    times; NaN if never reached."""
    t, loss = np.asarray(t, float), np.asarray(loss, float)
    target = fraction * loss[0]
    hit = np.flatnonzero(loss <= target)
    if hit.size == 0:
        return math.nan
    i = int(hit[0])
    if i == 0:
        return float(t[0])
    l0, l1 = math.log(loss[i - 1]), math.log(loss[i])
    return float(t[i - 1] + (t[i] - t[i - 1]) * (l0 - math.log(target)) / (l0 - l1))


def solve_seconds(d: int, repeats: int = 2) -> float:
    """Wall time of one warm ``mfpde.solve`` of the preset at d (no error estimate), best of ``repeats``."""
    c = config(d)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        mfpde.solve(c, parameters="none", progress=False, estimate=False)
        best = min(best, time.perf_counter() - t0)
    return best


def sweep(ctx: common.Context, force: bool = False) -> None:
    """``mfpde sweep examples/sweep_dimension.toml`` (one worker), collected; t_learn(d); timings."""
    import xarray as xr

    out = ctx.path("sweep")
    cmd = [sys.executable, "-c", "import sys; from mfpde.cli import main; sys.exit(main())", "sweep", str(SWEEP), "-o", str(out), "--workers", "1", "--no-progress"]
    if force:
        cmd.append("--overwrite")
    ctx.say("  $ mfpde " + " ".join(cmd[3:]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    ctx.say("  " + (proc.stdout + proc.stderr).strip().replace("\n", "\n  "))
    if proc.returncode != 0:
        raise RuntimeError(f"mfpde sweep failed with status {proc.returncode}")
    sweep_wall = time.perf_counter() - t0
    index = json.loads((out / "index.json").read_text())
    with xr.open_dataset(out / "sweep.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    dims = [int(v) for v in ds["d"].values]
    t = ds["time"].values
    task_seconds = {int(v["values"]["d"]): float(v["seconds"]) for v in index["tasks"].values()}
    mfpde.solve(config(dims[0]), parameters="none", progress=False, estimate=False)   # compile outside the timing
    rows = []
    for i, d in enumerate(dims):
        loss = ds["loss_train"].values[i]
        rows.append({"d": d, "t_learn": t_learn(t, loss), "loss_0": float(loss[0]), "loss_end": float(loss[-1]),
                     "sweep_task_seconds": task_seconds.get(d),
                     "solve_seconds": round(solve_seconds(d), 3)})
        ctx.say(f"  d = {d:>6}: t_learn = {rows[-1]['t_learn']:.2f}, loss {loss[0]:.4f} → {loss[-1]:.2e}, "
                f"solve {rows[-1]['solve_seconds']} s (sweep task {task_seconds.get(d):.2f} s incl. error estimate)")
    lnd = np.log([r["d"] for r in rows])
    tl = np.array([r["t_learn"] for r in rows])
    ok = np.isfinite(tl)
    slope, icpt = (np.polyfit(lnd[ok], tl[ok], 1) if ok.sum() >= 2 else (math.nan, math.nan))
    secs = {r["d"]: r["solve_seconds"] for r in rows}
    ratio = secs[max(secs)] / secs[min(secs)]
    ctx.tables["sweep"] = rows
    ctx.extra.update(t_learn_slope_per_ln_d=float(slope), t_learn_intercept=float(icpt),
                     t_learn_per_decade=float(slope * math.log(10)), cost_ratio_dmax_over_dmin=float(ratio),
                     sweep_wall_seconds=round(sweep_wall, 1))
    ctx.say(f"  t_learn ≈ {icpt:.2f} + {slope:.3f} ln d ({slope * math.log(10):.2f} per decade); "
            f"solve time d = {max(secs)} / d = {min(secs)}: {ratio:.2f}")
    ctx.check("cost_ratio_largest_over_smallest_d", ratio, None, 2.0, expected="≤ 2 (issue 17: the cost does not grow with d)")
    figure_sweep(ctx, ds, rows, slope, icpt)


def figure_sweep(ctx: common.Context, ds, rows, slope, icpt) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10.5, 3.9), gridspec_kw={"width_ratios": [1.6, 1]})
    t = ds["time"].values
    for i, r in enumerate(rows):
        ax[0].plot(t, ds["loss_train"].values[i], label=f"d = {r['d']}")
    ax[0].axhline(LEARNED * rows[0]["loss_0"], color="k", ls=":", lw=1, label="loss(0)/10")
    ax[0].set_yscale("log"), ax[0].set_xlabel("t"), ax[0].set_ylabel("train loss (reduced limit)")
    ax[0].set_title("single-index tanh teacher, two tanh layers"), ax[0].legend(fontsize=7)
    d = np.array([r["d"] for r in rows], float)
    tl = np.array([r["t_learn"] for r in rows])
    ax[1].plot(d, tl, "o", label="t_learn (loss ≤ loss(0)/10)")
    dd = np.geomspace(d.min(), d.max(), 50)
    ax[1].plot(dd, icpt + slope * np.log(dd), "k:", label=f"{icpt:.2f} + {slope:.2f} ln d")
    ax[1].set_xscale("log"), ax[1].set_xlabel("input dimension d"), ax[1].set_ylabel("t_learn")
    tw = ax[1].twinx()
    tw.plot(d, [r["solve_seconds"] for r in rows], "s--", color="tab:red", alpha=0.7, label="solve wall time")
    tw.set_ylabel("solve wall time [s]", color="tab:red")
    tw.set_ylim(0, 2.5 * max(r["solve_seconds"] for r in rows))
    h1, l1 = ax[1].get_legend_handles_labels()
    h2, l2 = tw.get_legend_handles_labels()
    ax[1].legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    path = ctx.figures / FIG_SWEEP
    ctx.figures.mkdir(parents=True, exist_ok=True)
    common.save(fig, path)
    ctx.files.append(str(path))


# ---------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m validation.high_dimension", description=__doc__.split("\n\n")[0])
    p.add_argument("parts", nargs="*", metavar="PART",
                   help="networks (d-dimensional SGD vs the reduced limit) and/or sweep (the d-sweep); default both")
    p.add_argument("--quick", action="store_true", help="small sizes (a minute or two)")
    p.add_argument("--force", action="store_true", help="retrain the networks and rerun the sweep")
    p.add_argument("--out", metavar="DIR", help="folder for the limits, run stores and sweep "
                                                "(default validation/results/high_dimension[/quick])")
    args = p.parse_args(argv)
    parts = args.parts or ["networks", "sweep"]
    bad = [x for x in parts if x not in ("networks", "sweep")]
    if bad:
        p.error(f"unknown part {', '.join(map(repr, bad))}; known: networks, sweep")
    out = Path(args.out) if args.out else common.DEFAULT_OUT / "high_dimension" / ("quick" if args.quick else "")
    figures = out / "figures" if args.quick else common.FIGURES
    ctx = common.Context(name="high_dimension", out=out, figures=figures, quick=args.quick)
    t0 = time.perf_counter()
    if "networks" in parts:
        ctx.say(f"== networks: {TITLE}")
        run(ctx, force=args.force)
    if "sweep" in parts:
        ctx.say("== d-sweep of the reduced limit")
        sweep(ctx, force=args.force)
    wall = time.perf_counter() - t0
    passed = all(c["passed"] for c in ctx.checks)
    results = out / "high_dimension.json" if (args.quick or args.out) else RESULTS
    old = json.loads(results.read_text()) if results.exists() else {}
    summary = {**old, "study": "high_dimension", "title": TITLE, "mode": "quick" if args.quick else "full",
               "sizes": SIZES["quick" if args.quick else "full"]}
    for part in parts:   # a run of one part keeps the other part's stored results
        summary[part] = {"checks": [c for c in ctx.checks if (c["name"].startswith("cost")) == (part == "sweep")],
                         "tables": {k: v for k, v in ctx.tables.items() if (k == "sweep") == (part == "sweep")},
                         "wall_seconds": round(wall, 1), "load_average_end": common.load_average(),
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    summary["extra"] = {**old.get("extra", {}), **ctx.extra}
    summary["figures"] = sorted(set(old.get("figures", [])) | {str(Path(f).relative_to(common.ROOT))
                                                               if Path(f).is_relative_to(common.ROOT) else f
                                                               for f in ctx.files})
    common.write_summary(results, summary)
    ctx.say(f"== {'PASS' if passed else 'FAIL'} in {wall:.1f} s; summary {results}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

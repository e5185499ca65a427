"""Command-line interface (``mfpde``): solve, sgd, compare, sweep, collect, reference build,
verify, refine, show, default-config.

``mfpde solve [CONFIG.toml] [-o OUT.nc]`` validates the configuration (the embedded default
when none is given), solves, prints a loss table and writes the labelled NetCDF file.
``mfpde show OUT.nc`` prints a summary.  Every user error prints one line ``mfpde: error:
…`` and exits with status 2 (an error with an ``exit_status``, e.g. a file that could not be
written, exits with that status); a blow-up writes the partial result and exits with status 3;
``mfpde solve --accuracy TOL`` that a cap stops before TOL writes the best result and exits with status 4.
Every output path is checked before any work (:mod:`mfpde.store.paths`): an existing file is
replaced only if it is an mfpde output of the same kind or with ``--overwrite``, an input of
the command never.
Imports mfpde and mfpde.solvers.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mfpde.errors import BlowUpError, MfpdeError, StoreError

EXIT_USAGE = 2
EXIT_BLOWUP = 3
EXIT_ACCURACY = 4   # mfpde solve --accuracy: a cap stopped the refinement before the target was met


def _one_line(message) -> str:
    """Keep an error message on one line even when it quotes a key or value with line breaks."""
    return str(message).replace("\r", "\\r").replace("\n", "\\n")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 already; keep one line
        self.print_usage(sys.stderr)
        print(f"mfpde: error: {_one_line(message)}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


_OVERWRITE_HELP = "replace an existing file that is not an mfpde output of this kind (never an input of the command)"
_SET_HELP = ("set any configuration key by its dotted path, VALUE a TOML value or a bare string (repeatable), "
             "e.g. --set solver.t_end=5 --set 'model.hidden=[\"tanh\",\"relu\"]' --set iid.W[0].mean=0.7")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mfpde", description="Mean-field limit of wide neural networks trained by SGD.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("solve", help="solve the limit system of a configuration (default: the embedded example)")
    s.add_argument("config", nargs="?", help="TOML configuration (docs/config.md); omitted: the embedded default")
    s.add_argument("-o", "--output", help="NetCDF file to write (default: output.path of the config)")
    s.add_argument("--stepper", help="override solver.stepper")
    s.add_argument("--dt", type=float, help="override solver.dt")
    s.add_argument("--t-end", type=float, help="override solver.t_end")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    s.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress bar on")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    s.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    s.add_argument("--checkpoint", metavar="FILE", help="write a checkpoint (HDF5, atomic) at save times")
    s.add_argument("--checkpoint-every", type=int, default=1, metavar="K",
                   help="checkpoint at every K-th save time (default 1)")
    s.add_argument("--resume", action="store_true",
                   help="continue from the --checkpoint file if it exists (the result is bit-for-bit that of an uninterrupted run)")
    s.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    s.add_argument("--no-estimate", action="store_true",
                   help="skip the error estimate (its companion solves on coarser rules and a longer step; "
                        "docs/accuracy.md); same as [accuracy] estimate = false")
    s.add_argument("--accuracy", type=float, metavar="TOL",
                   help="solve to this sup-time train-loss error: refine the rules (and the time step) until the "
                        "error estimate is <= TOL (docs/accuracy.md; caps: [accuracy] max_unknowns, max_seconds)")
    g = sub.add_parser("sgd", help="train finite-width networks by mean-field SGD (an ensemble over widths × replicas)")
    g.add_argument("config", nargs="?", help="TOML configuration (its [sgd] section; default: the embedded example)")
    g.add_argument("-o", "--output", default="runs.h5", help="HDF5 run store to create or append to (default runs.h5)")
    g.add_argument("--widths", help="comma-separated widths, e.g. 64,256,1024 (default: sgd.widths)")
    g.add_argument("--replicas", type=int, help="replicas per width (default: sgd.replicas)")
    g.add_argument("--mode", choices=("full", "online", "minibatch"), help="training mode (default: sgd.mode)")
    g.add_argument("--batch", type=int, help="minibatch size B (online/minibatch modes)")
    g.add_argument("--lr", type=float, help="ε, the SGD step (default: sgd.lr or solver.dt)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    g.add_argument("--overwrite", action="store_true",
                   help="start the store afresh instead of resuming (and replace a file that is not a run store; "
                        "never an input of the command)")
    g.add_argument("--checkpoint-every", type=int, metavar="K",
                   help="checkpoint each run in progress every K SGD steps (into OUTPUT.ckpt/, atomic)")
    g.add_argument("--resume", action="store_true",
                   help="continue interrupted runs from their checkpoints (bit-for-bit the uninterrupted result)")
    g.add_argument("--coupling", action="store_true", default=None,
                   help="also solve the limit with each network's features as tracers and record the per-weight coupling error")
    g.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress bar on")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    cp = sub.add_parser("compare", help="compare finite-width runs with the limit: errors, error × √n, fitted rate")
    cp.add_argument("limit", help="limit solution (NetCDF from mfpde solve)")
    cp.add_argument("runs", help="run store (HDF5 from mfpde sgd)")
    cp.add_argument("-o", "--output", help="write the comparison as NetCDF")
    cp.add_argument("--plot", metavar="DIR", help="write figures into DIR (needs the plot extra)")
    cp.add_argument("--point", action="append", default=[], metavar="KEY=VALUE",
                    help="with a collected SGD sweep as RUNS: the sweep point to compare (repeatable, one per axis)")
    cp.add_argument("--force", action="store_true",
                    help="compare a limit and runs whose configurations define different problems (with a warning)")
    cp.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    pl = sub.add_parser("plot", help="figures of a solution, run store, comparison or collected sweep (docs/plot.md)")
    pl.add_argument("file", help="limit solution, run store, comparison (compare -o) or collected sweep")
    pl.add_argument("file2", nargs="?", help="with a limit solution: a run store or collected sweep of the same problem")
    pl.add_argument("-o", "--output", required=True, metavar="DIR", help="folder of the figures (plot_KIND.FORMAT)")
    pl.add_argument("--format", default="png", choices=("png", "pdf", "svg"), help="file format (default png)")
    pl.add_argument("--dpi", type=int, default=200, help="resolution of png figures (default 200)")
    pl.add_argument("--kind", action="append", choices=("loss", "error_width", "yhat", "laws"),
                    help="figure kind (repeatable; default: every kind the inputs allow)")
    pl.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    sh = sub.add_parser("show", help="summarize a result file")
    sh.add_argument("path")
    sw = sub.add_parser("sweep", help="run a parameter sweep on dask.distributed (docs/sweeps.md)")
    sw.add_argument("sweep", help="sweep description (TOML: base configuration plus [[axis]] tables)")
    sw.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="directory of the task results and index.json")
    where = sw.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="submit to a running dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--workers", type=int, help="worker processes of the local cluster (default: the cores)")
    sw.add_argument("--threads-per-worker", type=int, default=1, help="threads per local worker process (default 1)")
    sw.add_argument("--numba-threads", type=int, default=1, help="Numba/BLAS threads per worker (default 1)")
    sw.add_argument("--retries", type=int, default=2, help="resubmissions of a failing task (default 2)")
    sw.add_argument("--retry-failed", action="store_true", help="run tasks again that failed in an earlier invocation")
    sw.add_argument("--overwrite", action="store_true",
                    help="replace an index.json or sweep.nc in OUTDIR that mfpde did not write")
    sw.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress bar on")
    sw.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    sw.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    co = sub.add_parser("collect", help="combine the results of a sweep directory into one NetCDF file")
    co.add_argument("outdir", help="sweep directory (written by mfpde sweep)")
    co.add_argument("-o", "--output", help="NetCDF file to write (default OUTDIR/sweep.nc)")
    co.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    rb = sub.add_parser("reference", help="stored reference solutions (docs/references.md)")
    rbs = rb.add_subparsers(dest="reference_command")
    rbb = rbs.add_parser("build", help="rebuild references from their configs: refinement table, NetCDF file, manifest")
    rbb.add_argument("names", nargs="*", help="reference names (default: every NAME.toml in --dir)")
    rbb.add_argument("--dir", help="reference folder (default: data/references)")
    rbb.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    rbb.add_argument("--overwrite", action="store_true",
                     help="replace a NAME.nc or manifest in --dir that is not an mfpde reference (never NAME.toml)")
    vf = sub.add_parser("verify", help="check the manifest, re-solve stored references and compare within their error estimates")
    vf.add_argument("references", nargs="*", help="reference names or .nc files (default: every reference in --dir)")
    vf.add_argument("--dir", help="reference folder (default: data/references)")
    rf = sub.add_parser("refine", help="refinement study: rule sizes × time steps, observed orders, error estimate")
    rf.add_argument("config", help="TOML configuration")
    rf.add_argument("--rule-sizes", required=True, help="comma-separated largest index-rule sizes, coarse to fine, e.g. 8,16,32")
    rf.add_argument("--data-sizes", help="comma-separated data-rule sizes, one per rule size (default: data rules as configured)")
    rf.add_argument("--dt", help="comma-separated time steps of a fixed-step stepper, coarse to fine, e.g. 0.02,0.01")
    rf.add_argument("--rtol", help="comma-separated rtol values of an adaptive stepper (atol scaled alike), e.g. 1e-6,1e-8")
    rf.add_argument("-o", "--output", help="NetCDF file for the table (default NAME_refine.nc)")
    rf.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    rf.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    sub.add_parser("default-config", help="print the embedded default configuration (TOML)")
    va = sub.add_parser("validate", help="run the validation studies: each seed setting against finite-width SGD "
                        "(docs/validation.md; needs the source checkout)")
    va.add_argument("studies", nargs="*", metavar="STUDY", help="studies to run (default: all; see docs/validation.md)")
    va.add_argument("--quick", action="store_true", help="small sizes (CI, a few minutes) with wider tolerances")
    va.add_argument("--out", metavar="DIR", help="output folder (default validation/results, quick: validation/results/quick)")
    va.add_argument("--figures", metavar="DIR", help="PNG folder (default docs/figures; quick: OUT/figures)")
    return p


def _check_outputs(args, outputs, inputs=()) -> None:
    """Every output of the command, checked before any work (mfpde/store/paths.py): ``outputs`` are
    (option, path, kind); ``inputs`` the files the command reads (never overwritten)."""
    from mfpde.store.paths import check_outputs

    check_outputs(outputs, overwrite=bool(getattr(args, "overwrite", False)), inputs=inputs)


def _config_inputs(path, c) -> list:
    """The files a configuration makes a command read: the TOML file and its data files."""
    if not path:
        return []
    out = [Path(path)]
    base = Path(path).parent
    data = c.raw.get("data") if isinstance(c.raw, dict) else None
    for spec in (data.values() if isinstance(data, dict) else ()):
        if isinstance(spec, dict) and spec.get("kind") == "file" and isinstance(spec.get("path"), str):
            p = Path(spec["path"])
            out.append(p if p.is_absolute() else base / p)
    return out


def _set(args) -> dict:
    """The ``--set KEY=VALUE`` overrides of a command, for ``mfpde.load(..., set=...)``."""
    from mfpde.api import parse_set

    return parse_set(getattr(args, "set", None))


def _solve(args) -> int:
    if args.resume and not args.checkpoint:
        from mfpde.errors import ConfigError

        raise ConfigError("--resume", "needs --checkpoint FILE")
    if args.checkpoint_every < 1:
        from mfpde.errors import ConfigError

        raise ConfigError("--checkpoint-every", f"must be >= 1, got {args.checkpoint_every}")
    import mfpde
    from mfpde.store import netcdf as io

    cold = _cache_cold()   # before the configuration is built (that caches a first kernel)
    overrides = {"stepper": args.stepper, "dt": args.dt, "t_end": args.t_end}   # None: not given
    # built once, data included, --set first; no file: the embedded default
    c = mfpde.load(args.config or None, set=_set(args), **overrides)
    for line in c.info:
        print(f"mfpde: {line}", file=sys.stderr)
    for note in c.notes:
        print(f"mfpde: warning: {note}", file=sys.stderr)
    if args.output is not None:
        out, key = args.output, "--output"
    elif c.output.path:
        out, key = c.output.path, "output.path"
    else:
        out, key = f"{c.problem.name}.nc", "--output"
    _check_outputs(args, [(key, out, "limit"), ("--checkpoint", args.checkpoint, "checkpoint")],
                   _config_inputs(args.config, c))
    out = Path(out)
    say = (lambda *a: None) if args.quiet else print
    t0 = time.perf_counter()

    def report(system, stepper):   # after the save times are checked against the stepper, before any step
        fixed = not stepper.adaptive
        step = f"dt = {c.solver.dt}" if fixed else f"rtol = {getattr(stepper, 'rtol', '?')}, atol = {getattr(stepper, 'atol', '?')}"
        say(f"mfpde: solving {c.problem.name!r}: L = {c.problem.model.L}, nodes per layer = "
            f"{list(system.layout.sizes)}, state size = {system.size}, {c.solver.stepper} {step}, t_end = {c.solver.t_end}"
            + (" — the linearized (NTK) limit ([solver] linearize)" if c.solver.linearize else ""))
        if not args.quiet:
            from mfpde.system.stiffness import assess, method_for

            # finite differences of the RHS for explicit steppers: no JVP kernel to compile
            say(assess(system, method=method_for(c.solver.stepper)).report(c.solver.stepper, c.solver.dt if fixed else None))

    if not args.quiet:
        _compile_notice(command="solve", cold=cold)
    tol = args.accuracy if args.accuracy is not None else c.accuracy.target
    if tol is not None:
        return _solve_to(args, c, tol, out, say, report)
    try:
        with _CompileTimer("solve", cold):
            sol = mfpde.solve(c, progress=False if args.quiet else args.progress, checkpoint=args.checkpoint,
                              checkpoint_every=args.checkpoint_every, resume=args.resume, on_start=report,
                              estimate=False if args.no_estimate else None, say=say)
    except BlowUpError as exc:
        if exc.partial is not None:
            io.write(exc.partial.to_xarray(), out)
            print(f"mfpde: error: {_one_line(exc)} (partial result written to {out})", file=sys.stderr)
        else:
            print(f"mfpde: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BLOWUP
    ds = sol.to_xarray()
    io.write(ds, out)
    say(io.loss_table(ds))
    est = sol.estimate
    if est is not None and est.status != "off":
        say(f"mfpde: {est.line()}")
        if est.status != "ok" or not est.reliable:
            print(f"mfpde: warning: {est.line()}", file=sys.stderr) if args.quiet else None
    jv = sol.stats.get("jvps", 0)
    say(f"mfpde: {sol.stats['steps']} steps, {sol.stats['rhs_evals']} RHS evaluations"
        + (f" + {jv} Jacobian-vector products" if jv else "")
        + f", {time.perf_counter() - t0:.2f} s wall; wrote {out}")
    return 0


def _solve_to(args, c, tol, out, say, report) -> int:
    """``mfpde solve --accuracy TOL`` (or ``[accuracy] target``): refine until the estimate meets TOL."""
    import json

    from mfpde.analysis import accuracy
    from mfpde.errors import ConfigError
    from mfpde.store import netcdf as io

    for flag, given in (("--checkpoint", args.checkpoint), ("--no-estimate", args.no_estimate)):
        if given:
            raise ConfigError(flag, "cannot be combined with --accuracy / [accuracy] target (every iteration is a new solve "
                              "and needs its error estimate)")
    if not (tol > 0 and tol < float("inf")):
        raise ConfigError("--accuracy", f"must be a finite number > 0, got {tol}")
    say(f"mfpde: solving {c.problem.name!r} to a sup-time train-loss error <= {tol:.2e}"
        + (f" (max_unknowns = {c.accuracy.max_unknowns})" if c.accuracy.max_unknowns else "")
        + (f" (max_seconds = {c.accuracy.max_seconds:g})" if c.accuracy.max_seconds else ""))
    t0 = time.perf_counter()
    try:
        res = accuracy.solve_to(c, tol, max_unknowns=c.accuracy.max_unknowns, max_seconds=c.accuracy.max_seconds,
                                progress=False if args.quiet else args.progress, say=say)
    except BlowUpError as exc:
        print(f"mfpde: error: {_one_line(exc)} (during the refinement for --accuracy)", file=sys.stderr)
        return EXIT_BLOWUP
    sol = res.solution
    ds = sol.to_xarray()
    ds.attrs.update({"accuracy_target": float(tol), "accuracy_met": int(res.met), "accuracy_reason": res.reason,
                     "accuracy_history": json.dumps(res.history), "accuracy_iterations": len(res.history)})
    io.write(ds, out)
    say(io.loss_table(ds))
    say(f"mfpde: {sol.estimate.line()}")
    last = next(h for h in reversed(res.history) if h["state_size"] == sol.system.size)
    chosen = ", ".join(f"{k} = {v}" for k, v in last["rules"].items()) + ", " + \
        ", ".join(f"{k} = {v:g}" for k, v in last["time"].items())
    total = time.perf_counter() - t0
    if res.met:
        say(f"mfpde: accuracy target {tol:.2e} met after {len(res.history)} iteration(s): {chosen}; "
            f"{sol.system.size} unknowns; {total:.1f} s in all; wrote {out}")
        return 0
    print(f"mfpde: error: accuracy target {tol:.2e} not met: {res.reason}; wrote the best result "
          f"(estimate {sol.estimate.sup_loss:.2e}; {chosen}; {sol.system.size} unknowns) to {out}", file=sys.stderr)
    return EXIT_ACCURACY


def _sgd(args) -> int:
    import mfpde
    from mfpde.problem import config as cfg_mod
    from mfpde.finite.ensemble import check_widths, run_ensemble

    cold = _cache_cold()   # before the configuration is built (that caches a first kernel)
    c = mfpde.load(args.config or None, set=_set(args))   # no file: the embedded default
    from mfpde.checks import MAX_BATCH, MAX_REPLICAS

    for name, hi in (("replicas", MAX_REPLICAS), ("batch", MAX_BATCH)):
        v = getattr(args, name)
        if v is not None and not 1 <= v <= hi:
            raise cfg_mod.ConfigError(f"--{name}", f"must be an integer in [1, {hi}], got {v}")
    if args.lr is not None and not (args.lr > 0 and args.lr < float("inf")):
        raise cfg_mod.ConfigError("--lr", f"must be a finite number > 0, got {args.lr}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise cfg_mod.ConfigError("--checkpoint-every", f"must be >= 1, got {args.checkpoint_every}")
    if args.resume and args.overwrite:
        raise cfg_mod.ConfigError("--resume", "cannot be combined with --overwrite")
    from mfpde.store.paths import check_output
    from mfpde.store.runs import checkpoint_dir

    inputs = _config_inputs(args.config, c)
    _check_outputs(args, [("--output", args.output, "runs")], inputs)
    ck_dir = checkpoint_dir(args.output)
    if args.checkpoint_every is not None or ck_dir.is_dir():   # written into, or cleaned, or removed (--overwrite)
        check_output(ck_dir, kind="sgd-checkpoints", overwrite=args.overwrite, inputs=inputs, key="--output")
    if not args.resume and not args.overwrite and ck_dir.is_dir() and any(ck_dir.glob("*.h5")):
        raise cfg_mod.ConfigError("--resume", f"{str(ck_dir)!r} holds checkpoints of interrupted runs: pass --resume "
                                  "to continue them or --overwrite to start afresh")
    say = (lambda *a: None) if args.quiet else print
    widths = check_widths(args.widths) if args.widths is not None else None
    if not args.quiet:
        _compile_notice(command="sgd", cold=cold)
    with _CompileTimer("sgd", cold):
        out = run_ensemble(c, args.output, widths=widths, replicas=args.replicas, mode=args.mode, batch=args.batch,
                           lr=args.lr, resume=not args.overwrite, progress=False if args.quiet else args.progress,
                           say=say, coupling=args.coupling, checkpoint_every=args.checkpoint_every,
                           estimate=not args.quiet)
    say(f"mfpde: wrote {out}")
    return 0




def _compare(args) -> int:
    from mfpde.analysis import compare
    from mfpde.store import netcdf as io
    from mfpde.store import runs

    outputs = [("--output", args.output, "compare"), ("--plot", args.plot, "directory")]
    if args.plot:
        outputs += [("--plot", Path(args.plot) / f, "figure") for f in compare.FIGURES]
    _check_outputs(args, outputs, [args.limit, args.runs])
    if args.plot:
        compare.require_plotting()
    limit = io.read(args.limit)
    from mfpde.store.paths import sniff

    if sniff(args.runs) == "collect":   # a collected sweep (mfpde collect): one point's runs; task files beside it
        ens = compare.sweep_runs(io.read(args.runs), args.point, args.runs, Path(args.runs).parent)
    elif args.point:
        raise MfpdeError(f"--point selects a point of a collected sweep (mfpde collect), but {args.runs!r} is not one")
    else:
        ens = runs.read(args.runs)
    res = compare.compare(limit, ens, limit_name=args.limit, runs_name=args.runs, force=args.force,
                          warn=lambda note: print(f"mfpde: warning: {note}", file=sys.stderr))
    print(compare.table(res))
    if args.output:
        from mfpde import __version__

        res.attrs.setdefault("title", "mfpde comparison: limit vs finite width")   # identifies the file (paths.sniff)
        res.attrs.setdefault("mfpde_version", __version__)
        io.write(res, args.output)
        print(f"mfpde: wrote {args.output}")
    if args.plot:
        for f in compare.plot(res, limit, ens, args.plot):
            print(f"mfpde: wrote {f}")
    return 0


def _plot(args) -> int:
    from mfpde.analysis import compare, plot
    from mfpde.errors import ConfigError

    if not 10 <= args.dpi <= 2400:
        raise ConfigError("--dpi", f"must be an integer in [10, 2400], got {args.dpi}")
    files = [f for f in (args.file, args.file2) if f is not None]
    compare.require_plotting()
    inputs = [plot.load(f) for f in files]
    kinds = args.kind or list(plot.available(inputs))
    _check_outputs(args, [("--output", args.output, "directory")]
                   + [("--output", Path(args.output) / plot.filename(k, args.format), "figure") for k in kinds], files)
    for f in plot.write(plot.figures(inputs, kinds), args.output, fmt=args.format, dpi=args.dpi):
        print(f"mfpde: wrote {f}")
    return 0


def _sweep(args) -> int:
    from mfpde import sweep
    from mfpde.errors import ConfigError

    for name in ("workers", "threads_per_worker", "numba_threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')}", f"must be >= 1, got {v}")
    if args.retries < 0:
        raise ConfigError("--retries", f"must be >= 0, got {args.retries}")
    _check_outputs(args, [("--output", args.output, "sweep"), ("--output", Path(args.output) / sweep.COLLECTED, "collect")]
                   if args.output else [("--output", args.output, "sweep")], [args.sweep])
    sw = sweep.load(args.sweep)
    say = (lambda *a: None) if args.quiet else print
    rep = sweep.run(sw, args.output, scheduler=args.scheduler, workers=args.workers,
                    threads_per_worker=args.threads_per_worker, numba_threads=args.numba_threads,
                    retries=args.retries, retry_failed=args.retry_failed,
                    progress=False if args.quiet else args.progress, say=say)
    if rep.failed:
        print(f"mfpde: error: {rep.failed} of {rep.total} tasks failed (see {Path(args.output) / sweep.INDEX})",
              file=sys.stderr)
        return EXIT_BLOWUP
    return 0


def _collect(args) -> int:
    from mfpde import sweep

    outdir = Path(args.outdir)
    target = args.output if args.output is not None else outdir / sweep.COLLECTED
    inputs = [outdir / sweep.INDEX]
    if outdir.is_dir():
        try:
            inputs += sweep.task_files(outdir)
        except OSError:
            pass   # collect itself says why the folder cannot be read
    _check_outputs(args, [("--output", target, "collect")], inputs)
    print(f"mfpde: wrote {sweep.collect(args.outdir, target)}")
    return 0


def _reference(args) -> int:
    from mfpde.analysis import references

    if args.reference_command != "build":
        print("mfpde: error: give a reference command: mfpde reference build [NAMES...]", file=sys.stderr)
        return EXIT_USAGE
    directory = Path(args.dir) if args.dir is not None else references.default_dir()
    _check_outputs(args, [("--dir", directory, "directory")])
    names = list(args.names) or (sorted(p.stem for p in directory.glob("*.toml")) if directory.is_dir() else [])
    _check_outputs(args, [("--dir", directory / f"{n}.nc", "reference") for n in names]
                   + [("--dir", directory / references.MANIFEST, "manifest")], [directory / f"{n}.toml" for n in names])
    references.build_all(args.names, args.dir, say=(lambda *a: None) if args.quiet else print)
    return 0


def _verify(args) -> int:
    from mfpde.analysis import references

    results = references.verify(args.references, args.dir)
    print(references.verify_table(results))
    return 0 if all(r.ok for r in results) else 1


def _refine(args) -> int:
    from mfpde.problem import config as cfg_mod
    from mfpde.analysis import references

    c = cfg_mod.load(args.config)
    out = args.output if args.output is not None else f"{c.problem.name}_refine.nc"
    _check_outputs(args, [("--output", out, "refine")], _config_inputs(args.config, c))
    try:
        study, out = references.refine(args.config, args.rule_sizes, data_sizes=args.data_sizes, dt=args.dt,
                                       rtol=args.rtol, output=out, say=(lambda *a: None) if args.quiet else print)
    except BlowUpError as exc:
        print(f"mfpde: error: {_one_line(exc)} (a refinement level blew up: use smaller --dt or --rtol)", file=sys.stderr)
        return EXIT_BLOWUP
    print(study.table())
    print(f"mfpde: wrote {out}")
    return 0


def _validate(args) -> int:
    """``mfpde validate``: the studies live in the source checkout (validation/), next to mfpde/."""
    _check_outputs(args, [("--out", args.out, "directory"), ("--figures", args.figures, "directory")])
    try:
        from validation.runner import run_args
    except ImportError:
        root = Path(__file__).resolve().parent.parent
        if not (root / "validation" / "runner.py").exists():
            raise MfpdeError("the validation studies need the source checkout (its validation/ folder); "
                             "run mfpde validate from a clone of the repository") from None
        sys.path.insert(0, str(root))
        from validation.runner import run_args
    return run_args(args)


def _jit_config():
    """mfpde._jit, imported by name: a module that imports it by statement counts as a kernel
    source (``_jit.kernel_sources``), and every edit of this file (which defines no kernel) would
    then recompile all kernels."""
    import importlib

    return importlib.import_module("mfpde._jit")


# Expected compile time of a first run (seconds) where this machine has no measurement yet:
# the default solve from an empty cache, measured on the lead's 2-core Intel Xeon (issue 15:
# 70 s before the compile-time variants of mfpde.system.kernels, 18 s after).  Each cold run records its own measurement
# (:func:`_compile_record`), which the notice prefers.
EXPECTED_COMPILE_S = 20
COMPILE_RECORD = "mfpde-compile-seconds.json"


def _compile_record():
    """Where cold runs record their compile time (seconds per command, JSON): beside the
    per-version cache folders (``.numba-cache/``, so the record outlives a kernel edit), or
    inside an explicit ``NUMBA_CACHE_DIR``; None when caching is off."""
    _jit = _jit_config()
    if not _jit.CACHE or not _jit.CACHE_DIR:
        return None
    d = Path(_jit.CACHE_DIR)
    return (d.parent if d.parent.name == ".numba-cache" else d) / COMPILE_RECORD


def _recorded_compile_seconds(command: str) -> float | None:
    """The compile time a cold ``command`` measured on this machine last time (None: none)."""
    import json

    path = _compile_record()
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(command) if path is not None else None
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and 0 < value < 1e5 else None


def _record_compile_seconds(command: str, seconds: float) -> None:
    """Store a cold run's measured compile time (best effort: a read-only cache says nothing)."""
    import json
    import os

    path = _compile_record()
    if path is None:
        return
    try:
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
            table = table if isinstance(table, dict) else {}
        except (OSError, ValueError):
            table = {}
        table[command] = round(float(seconds), 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _cache_cold() -> bool:
    """Whether this source version has no compiled kernels cached yet.  Ask before loading a
    configuration: that compiles a first small kernel into the cache already."""
    return not _jit_config().cache_is_warm()


def _compile_notice(stream=None, command: str = "solve", cold: bool | None = None) -> bool:
    """On a terminal, say in one line before a first run (``cold``; None: :func:`_cache_cold` now)
    that the kernels compile now and how long that takes (this machine's last measurement for
    ``command``, else :data:`EXPECTED_COMPILE_S`); returns whether it said so.  Off a terminal
    nothing is printed."""
    stream = sys.stderr if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()) or not (_cache_cold() if cold is None else cold):
        return False
    seconds = _recorded_compile_seconds(command)
    when = (f"about {seconds:.0f} s, as measured here last time" if seconds is not None
            else f"expect about {EXPECTED_COMPILE_S} s")
    print(f"mfpde: compiling the Numba kernels now, once per install or kernel edit ({when}); "
          "later runs load them from the cache", file=stream, flush=True)
    return True


class _CompileTimer:
    """Around a command: when the cache was cold at the start (``cold``; None: :func:`_cache_cold`
    on entry), the time Numba spent compiling (its ``numba:compile`` events, nested ones counted
    once) is recorded for the next notice."""

    def __init__(self, command: str, cold: bool | None = None):
        self.command = command
        self.cold = cold
        self._ctx = None

    def __enter__(self):
        if _jit_config().CACHE and (_cache_cold() if self.cold is None else self.cold):
            from numba.core import event

            self._ctx = event.install_listener("numba:compile", event.TimingListener())
            self._timer = self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self._ctx is None:
            return False
        self._ctx.__exit__(*exc)
        if exc[0] is None and self._timer.done and self._timer.duration > 0:
            _record_compile_seconds(self.command, self._timer.duration)
        return False


# Commands whose xarray objects hold numpy arrays only.  xarray asks whether an array is a dask
# array by importing dask whenever dask is installed (the sweep extra): dask.array, distributed and
# scipy.fft, 0.6–0.8 s of a warm `mfpde solve` of ~2 s.  Run as the `mfpde` program (argv None),
# these commands tell Python that dask is absent for the rest of their own process
# (sys.modules[name] = None: importing it raises ImportError, which xarray reads as "no dask").
NO_DASK_COMMANDS = ("solve", "show")


def _without_dask(command) -> bool:
    """For a :data:`NO_DASK_COMMANDS` command of the ``mfpde`` program, block dask's import (unless
    it is imported already); returns whether it did."""
    if command not in NO_DASK_COMMANDS or "dask" in sys.modules:
        return False
    for name in ("dask", "distributed"):
        sys.modules.setdefault(name, None)
    return True


def main(argv=None) -> int:
    """The ``mfpde`` program: ``argv`` None reads ``sys.argv`` (the console command, which owns its
    process: :data:`NO_DASK_COMMANDS` skip dask's import); a list runs in-process and changes
    nothing outside the command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:
        _without_dask(args.command)
    if args.version:
        from mfpde import __version__

        print(f"mfpde {__version__}")
        return 0
    try:
        if args.command == "solve":
            return _solve(args)
        if args.command == "sgd":
            return _sgd(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "plot":
            return _plot(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "collect":
            return _collect(args)
        if args.command == "reference":
            return _reference(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "refine":
            return _refine(args)
        if args.command == "show":
            from mfpde.store import netcdf as io

            ds = io.read(args.path)
            if "time" not in ds.coords:
                raise StoreError(f"{args.path!r} is not an mfpde result file (it has no 'time' coordinate)")
            print(io.summary(ds))
            return 0
        if args.command == "validate":
            return _validate(args)
        if args.command == "default-config":
            from mfpde.problem.config import default_text

            print(default_text(), end="")
            return 0
        parser.print_help()
        return EXIT_USAGE
    except MfpdeError as exc:
        print(f"mfpde: error: {_one_line(exc)}", file=sys.stderr)
        status = getattr(exc, "exit_status", EXIT_USAGE)   # e.g. 1 for a file that could not be written
        return status if isinstance(status, int) and not isinstance(status, bool) and 0 < status < 126 else EXIT_USAGE
    except KeyboardInterrupt:
        print("mfpde: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

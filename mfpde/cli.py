"""Command-line interface (``mfpde``): solve, sgd, compare, show, default-config.

``mfpde solve [CONFIG.toml] [-o OUT.nc]`` validates the configuration (the embedded default
when none is given), solves, prints a loss table and writes the labelled NetCDF file.
``mfpde show OUT.nc`` prints a summary.  Every user error prints one line ``mfpde: error:
…`` and exits with status 2; a blow-up writes the partial result and exits with status 3.
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


def _one_line(message) -> str:
    """Keep an error message on one line even when it quotes a key or value with line breaks."""
    return str(message).replace("\r", "\\r").replace("\n", "\\n")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 already; keep one line
        self.print_usage(sys.stderr)
        print(f"mfpde: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


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
    s.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress bar on")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    s.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    g = sub.add_parser("sgd", help="train finite-width networks by mean-field SGD (an ensemble over widths × replicas)")
    g.add_argument("config", nargs="?", help="TOML configuration (its [sgd] section; default: the embedded example)")
    g.add_argument("-o", "--output", default="runs.h5", help="HDF5 run store to create or append to (default runs.h5)")
    g.add_argument("--widths", help="comma-separated widths, e.g. 64,256,1024 (default: sgd.widths)")
    g.add_argument("--replicas", type=int, help="replicas per width (default: sgd.replicas)")
    g.add_argument("--mode", choices=("full", "online", "minibatch"), help="training mode (default: sgd.mode)")
    g.add_argument("--batch", type=int, help="minibatch size B (online/minibatch modes)")
    g.add_argument("--lr", type=float, help="ε, the SGD step (default: sgd.lr or solver.dt)")
    g.add_argument("--overwrite", action="store_true", help="start the store afresh instead of resuming")
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
    sh = sub.add_parser("show", help="summarize a result file")
    sh.add_argument("path")
    sub.add_parser("default-config", help="print the embedded default configuration (TOML)")
    return p


def _solve(args) -> int:
    from mfpde import config as cfg_mod
    from mfpde import io, solvers
    from mfpde.system import System

    raw_cfg = cfg_mod.load(args.config) if args.config else cfg_mod.default()
    raw = raw_cfg.raw
    if args.stepper or args.dt is not None or args.t_end is not None:
        raw = dict(raw)
        solver = dict(raw.get("solver", {}))
        if args.stepper:
            solver["stepper"] = args.stepper
        if args.dt is not None:
            solver["dt"] = args.dt
        if args.t_end is not None:
            solver["t_end"] = args.t_end
            if "save_times" in solver:
                solver["save_times"] = [x for x in solver["save_times"] if x <= args.t_end]
        raw["solver"] = solver
        base = Path(args.config).parent if args.config else None
        raw_cfg = cfg_mod.from_dict(raw, raw_cfg.source, base)
    c = raw_cfg
    for note in c.notes:
        print(f"mfpde: warning: {note}", file=sys.stderr)
    out = Path(args.output or c.output.path or f"{c.problem.name}.nc")
    say = (lambda *a: None) if args.quiet else print
    t0 = time.perf_counter()
    system = System(c.problem)
    stepper = solvers.make(c.solver.stepper, system, **c.solver.stepper_options())
    say(f"mfpde: solving {c.problem.name!r}: L = {c.problem.model.L}, nodes per layer = "
        f"{list(system.layout.sizes)}, state size = {system.size}, {c.solver.stepper} dt = {c.solver.dt}, t_end = {c.solver.t_end}")
    if not args.quiet:
        from mfpde.stiffness import assess

        say(assess(system).report(c.solver.stepper, c.solver.dt if c.solver.stepper in ("euler", "heun", "midpoint", "rk3", "rk4") else None))
    try:
        sol = solvers.integrate(system, stepper, c.solver.t_end, times=c.solver.save_times,
                                save_every=c.solver.save_every, parameters=c.output.parameters,
                                progress=False if args.quiet else args.progress)
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
    say(f"mfpde: {sol.stats['steps']} steps, {sol.stats['rhs_evals']} RHS evaluations, "
        f"{time.perf_counter() - t0:.2f} s wall; wrote {out}")
    return 0


def _sgd(args) -> int:
    from mfpde import config as cfg_mod
    from mfpde.ensemble import check_widths, run_ensemble

    c = cfg_mod.load(args.config) if args.config else cfg_mod.default()
    for name in ("replicas", "batch"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise cfg_mod.ConfigError(f"--{name}", f"must be >= 1, got {v}")
    if args.lr is not None and not args.lr > 0:
        raise cfg_mod.ConfigError("--lr", f"must be > 0, got {args.lr}")
    say = (lambda *a: None) if args.quiet else print
    widths = check_widths(args.widths) if args.widths else None
    out = run_ensemble(c, args.output, widths=widths, replicas=args.replicas, mode=args.mode, batch=args.batch,
                       lr=args.lr, resume=not args.overwrite, progress=False if args.quiet else args.progress, say=say,
                       coupling=args.coupling)
    say(f"mfpde: wrote {out}")
    return 0


def _compare(args) -> int:
    from mfpde import compare, io, runs

    limit = io.read(args.limit)
    ens = runs.read(args.runs)
    res = compare.compare(limit, ens)
    print(compare.table(res))
    if args.output:
        io.write(res, args.output)
        print(f"mfpde: wrote {args.output}")
    if args.plot:
        for f in compare.plot(res, limit, ens, args.plot):
            print(f"mfpde: wrote {f}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        if args.command == "show":
            from mfpde import io

            ds = io.read(args.path)
            if "time" not in ds.coords:
                raise StoreError(f"{args.path!r} is not an mfpde result file (it has no 'time' coordinate)")
            print(io.summary(ds))
            return 0
        if args.command == "default-config":
            from mfpde.config import default_text

            print(default_text(), end="")
            return 0
        parser.print_help()
        return EXIT_USAGE
    except MfpdeError as exc:
        print(f"mfpde: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mfpde: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command-line interface (``mfpde``): solve, show, default-config.

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

from mfpde.errors import BlowUpError, MfpdeError

EXIT_USAGE = 2
EXIT_BLOWUP = 3


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
    out = Path(args.output or c.output.path or f"{c.problem.name}.nc")
    say = (lambda *a: None) if args.quiet else print
    t0 = time.perf_counter()
    system = System(c.problem)
    stepper = solvers.make(c.solver.stepper, system, dt=c.solver.dt, bound=c.solver.bound)
    say(f"mfpde: solving {c.problem.name!r}: L = {c.problem.model.L}, nodes per layer = "
        f"{list(system.layout.sizes)}, state size = {system.size}, {c.solver.stepper} dt = {c.solver.dt}, t_end = {c.solver.t_end}")
    try:
        sol = solvers.integrate(system, stepper, c.solver.t_end, times=c.solver.save_times,
                                save_every=c.solver.save_every, parameters=c.output.parameters,
                                progress=False if args.quiet else args.progress)
    except BlowUpError as exc:
        if exc.partial is not None:
            io.write(exc.partial.to_xarray(), out)
            print(f"mfpde: error: {exc} (partial result written to {out})", file=sys.stderr)
        else:
            print(f"mfpde: error: {exc}", file=sys.stderr)
        return EXIT_BLOWUP
    ds = sol.to_xarray()
    io.write(ds, out)
    say(io.loss_table(ds))
    say(f"mfpde: {sol.stats['steps']} steps, {sol.stats['rhs_evals']} RHS evaluations, "
        f"{time.perf_counter() - t0:.2f} s wall; wrote {out}")
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
        if args.command == "show":
            from mfpde import io

            print(io.summary(io.read(args.path)))
            return 0
        if args.command == "default-config":
            from mfpde.config import default_text

            print(default_text(), end="")
            return 0
        parser.print_help()
        return EXIT_USAGE
    except MfpdeError as exc:
        print(f"mfpde: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mfpde: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

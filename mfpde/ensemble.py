"""Ensembles of finite-width runs over widths × replicas, appended to an HDF5 run store.

:func:`run_ensemble` trains one network per (width, replica) with :func:`mfpde.finite.train`
at the limit solver's save times and appends each to the store as soon as it finishes; with
``resume`` completed runs are skipped.  Imports mfpde only.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mfpde import config as cfg_mod
from mfpde import finite, runs
from mfpde.errors import BlowUpError, ConfigError


def record_times(c: cfg_mod.Config):
    from mfpde.solvers.controller import save_times

    return save_times(c.solver.t_end, every=c.solver.save_every, times=c.solver.save_times)


def run_ensemble(c: cfg_mod.Config, out: str | Path, *, widths=None, replicas=None, mode=None, batch=None,
                 lr=None, resume: bool = True, progress: bool | None = None, say=print, coupling=None) -> Path:
    """Train every (width, replica) of the ensemble and append it to ``out``; returns the path."""
    from mfpde import __version__

    sgd = c.sgd
    widths = tuple(widths or sgd.widths)
    replicas = int(replicas or sgd.replicas)
    mode = mode or sgd.mode
    batch = int(batch or sgd.batch)
    lr = float(lr or sgd.lr or c.solver.dt)
    coupling = sgd.coupling if coupling is None else bool(coupling)
    law = None
    if mode == "online":
        from mfpde.data import make_law

        law = make_law(c.raw["data"]["train"], "data.train")
    out = Path(out)
    attrs = {"config": cfg_mod.to_toml(c.raw), "mode": mode, "batch": batch, "lr": lr, "t_end": c.solver.t_end,
             "mfpde_version": __version__, "problem": c.problem.name}
    if out.exists() and not resume:
        out.unlink()
    times = record_times(c)
    show = sys.stderr.isatty() if progress is None else progress
    with runs.RunStore(out, "a", attrs=attrs) as store:
        done = store.completed()
        todo = [(n, r) for n in widths for r in range(replicas) if runs.run_name(n, r) not in done]
        if len(todo) < len(widths) * replicas:
            say(f"mfpde: resuming {out}: {len(widths) * replicas - len(todo)} runs already complete")
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="sgd runs", unit="run")
        for n, r in todo:
            try:
                run = finite.train(c.problem, n, mode=mode, batch=batch, lr=lr, t_end=c.solver.t_end,
                                   record_times=times, replica=r, law=law, statistics=c.sgd.statistics,
                                   bound=c.solver.bound, coupling=coupling)
            except BlowUpError as exc:
                run = exc.partial
                say(f"mfpde: warning: width {n} replica {r}: {exc}")
            store.write(run)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(width=n, replica=r, loss=f"{run.observables['loss_train'][-1]:.3g}")
        if bar is not None:
            bar.close()
    return out


def check_widths(text: str) -> tuple[int, ...]:
    try:
        w = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError("--widths", f"expected comma-separated integers, got {text!r}") from None
    if not w or any(n < 1 for n in w):
        raise ConfigError("--widths", f"expected positive integers, got {text!r}")
    return w

"""Ensembles of finite-width runs over widths × replicas, appended to an HDF5 run store (Finite room).

:func:`run_ensemble` trains one network per (width, replica) with :func:`mfpde.finite.train`
at the limit solver's save times and appends each to the store as soon as it finishes; with
``resume`` completed runs are skipped.  With ``checkpoint_every = K`` each run in progress
is checkpointed every K steps into ``RUNS.h5.ckpt/w{n}_r{replica}.h5`` (removed once the run
is in the store); with ``resume`` an interrupted run continues from its checkpoint, bit for
bit.  Before training it says the number of runs, SGD steps and weights per network and an
estimated wall time (:func:`estimate_seconds`, from a short timed probe); a line per finished run
reports progress, and on a terminal a tqdm bar on stderr advances per run, with a second bar
per record time within the run.  Imports mfpde only; user values are checked through
:mod:`mfpde.checks`.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from mfpde import checks, finite

from mfpde.store import runs
from mfpde.problem import config as cfg_mod
from mfpde.errors import BlowUpError, ConfigError


def record_times(c: cfg_mod.Config):
    from mfpde.solvers.controller import save_times

    return save_times(c.solver.t_end, every=c.solver.save_every, times=c.solver.save_times)


PROBE_STEPS = 20   # SGD steps of the timed probe behind the estimate (after one untimed, compiling step)


def estimate_seconds(problem, opts, widths, law=None) -> tuple[float, int, int]:
    """(estimated wall seconds of one run per entry of ``widths``, the probe's steps, the probe's width).

    A probe: one untimed SGD step of the network with the most weights (it compiles and
    warms the caches), then :data:`PROBE_STEPS` timed steps (fewer when a run has fewer), with
    the run's own options (statistics at its two records).  The time per step is scaled by
    the weights of each width and by the steps of a run; records between, the coupling solves
    and the machine's load are not in it: an estimate, not a promise."""
    from mfpde.finite.sgd import n_weights

    steps = int(round(opts.t_end / opts.lr))
    k = max(1, min(steps, PROBE_STEPS))
    big = max(widths, key=lambda n: n_weights(problem, n))
    base = dict(record_times=None, coupling=False, snapshots=False)
    try:
        finite.train(problem, big, dataclasses.replace(opts, t_end=opts.lr, **base), law=law)
        t0 = time.perf_counter()
        finite.train(problem, big, dataclasses.replace(opts, t_end=k * opts.lr, **base), law=law)
        per_step = (time.perf_counter() - t0) / k
    except BlowUpError as exc:   # the probe still timed its steps until the blow-up
        per_step = float(exc.partial.stats.get("wall_seconds", 0.0)) / max(1, int(exc.partial.stats.get("steps", 1)))
    runs = sum(n_weights(problem, n) for n in widths) / n_weights(problem, big)   # in runs of the largest width
    return per_step * steps * runs, k, big


def run_ensemble(c: cfg_mod.Config, out: str | Path, *, widths=None, replicas=None, mode=None, batch=None,
                 lr=None, resume: bool = True, progress: bool | None = None, say=print, coupling=None,
                 checkpoint_every: int | None = None, estimate: bool = True) -> Path:
    """Train every (width, replica) of the ensemble and append it to ``out``; returns the path.

    ``resume``: skip runs already in the store and continue interrupted runs from their
    checkpoints; otherwise the store and its checkpoints are started afresh.
    ``checkpoint_every``: checkpoint each run in progress every K SGD steps.  ``estimate``:
    say an estimated wall time before training (:func:`estimate_seconds`, a short probe).
    """
    from mfpde import __version__

    sgd = c.sgd
    widths = sgd.widths if widths is None else widths
    if isinstance(widths, (int, float, str)) or not widths:
        raise ConfigError("sgd.widths", f"expected a non-empty list of integer widths, got {widths!r}")
    widths = tuple(_count(n, "sgd.widths", checks.MAX_WIDTH) for n in widths)
    replicas = _count(sgd.replicas if replicas is None else replicas, "sgd.replicas", checks.MAX_REPLICAS)
    mode = sgd.mode if mode is None else mode
    mode = checks.choice(mode, finite.MODES, "sgd.mode", what="mode")
    batch = _count(sgd.batch if batch is None else batch, "sgd.batch", checks.MAX_BATCH)
    lr = checks.number(sgd.lr or c.solver.dt if lr is None else lr, "sgd.lr", positive=True)
    coupling = sgd.coupling if coupling is None else bool(coupling)
    law = None
    if mode == "online":
        from mfpde.problem.data import make_law

        law = make_law(c.raw["data"]["train"], "data.train")
    opts = finite.TrainOptions.from_config(c, mode=mode, batch=batch, lr=lr, coupling=coupling)
    for n in widths:   # everything is checked before the store is touched (record times on the step grid too)
        opts.check(c.finite_problem, n, law)
    from mfpde.store.paths import check_output

    out = check_output(out, kind="runs", overwrite=not resume, key="out")   # resume=False replaces whatever is there
    attrs = {"config": cfg_mod.to_toml(c.raw), "mode": mode, "batch": batch, "lr": lr, "t_end": c.solver.t_end,
             "mfpde_version": __version__, "problem": c.problem.name}
    if checkpoint_every is not None:
        checks.integer(checkpoint_every, "--checkpoint-every", 1)
    ck_dir = runs.checkpoint_dir(out)
    # the store's lock is taken first: "w" (not resuming) removes the old store and its
    # checkpoints under it, and each atomic write removes only dead writers' temporaries
    steps = int(round(c.solver.t_end / lr))   # SGD steps per run (finite.train)
    show = sys.stderr.isatty() if progress is None else progress
    with runs.RunStore(out, "a" if resume else "w", attrs=attrs) as store:
        done = store.completed()
        todo = [(n, r) for n in widths for r in range(replicas) if runs.run_name(n, r) not in done]
        total = len(widths) * replicas
        if len(todo) < total:
            say(f"mfpde: resuming {out}: {total - len(todo)} runs already complete")
        say(f"mfpde: sgd ensemble {c.problem.name!r}: {len(todo)} runs to train ({len(widths)} widths × {replicas} "
            f"replicas{f', {total - len(todo)} already complete' if len(todo) < total else ''}) × {steps} SGD steps = "
            f"{len(todo) * steps} steps; {mode} mode, lr = {lr:g}, widths {', '.join(map(str, widths))}")
        from mfpde.finite.sgd import n_weights

        say("mfpde: weights per network: " + ", ".join(f"width {n}: {n_weights(c.finite_problem, n)}" for n in widths))
        if estimate and todo:
            secs, k, big = estimate_seconds(c.finite_problem, opts, [n for n, _ in todo], law)
            say(f"mfpde: estimated wall time {secs:.3g} s{f' (≈ {secs / 60:.1f} min)' if secs >= 120 else ''} (an estimate: {k} timed SGD steps of width {big}, "
                f"scaled by steps and weights{'; without the coupling solves' if coupling else ''})")
        bar = inner = None
        n_records = len(opts.record_steps())
        if show:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="sgd runs", unit="run", file=sys.stderr)
        for i, (n, r) in enumerate(todo, 1):
            hook = None
            if bar is not None:
                inner = tqdm(total=n_records, desc=f"  width {n} replica {r}", unit="record", file=sys.stderr,
                             position=1, leave=False)

                def hook(done, _total, t, inner=inner, shown=[0.0]):
                    # n set and refreshed at most every 0.1 s (as tqdm's update would); the run bar alone updates
                    inner.n = done
                    inner.set_postfix(t=f"{t:.4g}", refresh=False)
                    if done == inner.total or time.monotonic() - shown[0] >= 0.1:
                        inner.refresh()
                        shown[0] = time.monotonic()
            ck = ck_dir / f"{runs.run_name(n, r)}.h5"
            use_ck = checkpoint_every is not None or (resume and ck.exists())
            if ck.exists() and resume:
                say(f"mfpde: continuing width {n} replica {r} from its checkpoint {ck}")
            try:
                run = finite.train(c.finite_problem, n, opts, replica=r, law=law, checkpoint=ck if use_ck else None,
                                   checkpoint_every=checkpoint_every, resume=resume, progress=hook)
            except BlowUpError as exc:
                run = exc.partial
                say(f"mfpde: warning: width {n} replica {r}: {exc}")
            finally:
                if inner is not None:
                    inner.close()
            store.write(run)
            if ck.exists():
                ck.unlink()   # the run is in the store now
            loss = _final_loss(run)
            line = (f"mfpde: run {i}/{len(todo)}: width {n} replica {r}: {run.status}, "
                    f"final loss_train {loss:.4g} after {run.stats.get('steps', '?')} steps, "
                    f"{float(run.stats.get('wall_seconds', float('nan'))):.2f} s")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(width=n, replica=r, loss=f"{loss:.3g}", refresh=False)
                with tqdm.external_write_mode(file=sys.stdout):   # the line above the bar, not through it
                    say(line)
            else:
                say(line)
        if ck_dir.is_dir() and not any(ck_dir.iterdir()):
            ck_dir.rmdir()
        if bar is not None:
            bar.close()
    return out


def _final_loss(run) -> float:
    """The last recorded training loss of a run (NaN when none was recorded)."""
    try:
        return float(run.observables["loss_train"][-1])
    except (KeyError, IndexError, TypeError, ValueError):
        return float("nan")




def _count(v, key: str, hi: int) -> int:
    return checks.integer(v, key, 1, hi)


def check_widths(text: str) -> tuple[int, ...]:
    try:
        w = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError("--widths", f"expected comma-separated integers, got {text!r}") from None
    if not w or any(not 1 <= n <= checks.MAX_WIDTH for n in w):
        raise ConfigError("--widths", f"expected integers in [1, {checks.MAX_WIDTH}], got {text!r}")
    return w

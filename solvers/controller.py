"""The time loop (Stepper room): advance to each save time, run trackers there, collect.

:func:`integrate` owns the loop: the stepper advances in compiled code up to the next save
time (in chunks of at most ~0.25 s so the progress bar and Ctrl-C stay responsive); at save
times the :class:`~mfpde.store.solution.Solution` records observables and, if asked, the state;
trackers run at save times, each at its own ``interval`` of simulated time (every save time
by default; :meth:`Tracker.due`, after py-pde's ``ConstantInterrupts``).  A non-finite state (detected inside the compiled
loop, within one step) raises :class:`~mfpde.errors.BlowUpError` carrying the partial
solution, whose last entry is the last good state: at its own time, or — when it is the state
already saved at the last save time — not repeated (the time axis stays strictly increasing).
The save times are checked against the stepper (``Stepper.check_times``: a fixed step longer
than a save interval is refused) before anything is recorded.  Imports numpy, tqdm, mfpde and
solvers.base.
"""
from __future__ import annotations

import math
import os
import sys
import time as _time
from typing import Callable, Iterable, Sequence

import numpy as np

from mfpde import checks
from mfpde.errors import BlowUpError, ConfigError
from mfpde.store.solution import Solution
from mfpde.solvers.base import MAX_STEPS, NEWTON, OK, STATUS_TEXT, STEP_SIZE, Stepper


def _number(v, key):
    """A user-supplied time as float (numpy scalars accepted); ConfigError naming ``key`` otherwise."""
    return checks.number(v.item() if isinstance(v, (np.integer, np.floating)) else v, key)


def save_times(t_end: float, *, every: float | None = None, times: Sequence[float] | None = None,
               t0: float = 0.0) -> np.ndarray:
    """Sorted save times in [t0, t_end], always including t0 and t_end."""
    t0 = _number(t0, "t0")
    t_end = _number(t_end, "solver.t_end")
    if not (t_end > t0):
        raise ConfigError("solver.t_end", f"must be > {t0}, got {t_end!r}")
    if times is not None:
        if isinstance(times, (str, bytes)) or not hasattr(times, "__iter__"):
            raise ConfigError("solver.save_times", f"expected a list of times, got {times!r}")
        times = list(times)
        if any(np.ndim(x) != 0 for x in times):
            raise ConfigError("solver.save_times", "expected a list of numbers")
        ts = np.asarray([_number(x, "solver.save_times") for x in times], dtype=float)
        if ts.ndim != 1 or not np.all(np.isfinite(ts)) or np.any(ts < t0) or np.any(ts > t_end):
            raise ConfigError("solver.save_times", f"must be finite times within [{t0}, {t_end}]")
    elif every is not None:
        every = _number(every, "solver.save_every")
        if not (every > 0):
            raise ConfigError("solver.save_every", f"must be > 0, got {every!r}")
        n = int(np.floor((t_end - t0) / every * (1 + 1e-12)))
        ts = t0 + every * np.arange(n + 1)
    else:
        ts = np.array([t0, t_end])
    ts = np.unique(np.concatenate([[t0], ts, [t_end]]))
    # merge times closer than 1e-12 relative (rounding of every*k near t_end)
    keep = np.concatenate([[True], np.diff(ts) > 1e-12 * max(1.0, abs(t_end))])
    ts = ts[keep]
    ts[-1] = t_end
    return ts


class Tracker:
    """Something that watches the run at save times; subclass and override ``handle``.

    ``interval`` (simulated time): ``handle`` runs at the start and then at the first save
    time at or after each t0 + k·interval (k = 1, 2, …; an interval shorter than the save
    interval means every save time); None, the default, is every save time.  Which save times
    are due depends only on t0, the interval and the save times, so a resumed solve calls a
    tracker where an uninterrupted one does.  ``progress(t)`` runs after every compiled chunk.
    """

    interval: float | None = None

    def __init__(self, interval: float | None = None):
        if interval is not None:
            interval = checks.number(interval, "interval")
            if not interval > 0:
                raise ConfigError("interval", f"a tracker interval must be > 0 or None, got {interval!r}")
        self.interval = interval

    def due(self, t0: float, t_prev: float | None, t: float) -> bool:
        """Whether ``handle`` runs at save time ``t`` (the previous save time ``t_prev``; None at the start)."""
        if self.interval is None or t_prev is None:
            return True
        per = self.interval      # due when a multiple t0 + k·interval lies in (t_prev, t] (up to rounding)
        return math.floor((t - t0) / per + 1e-9) > math.floor((t_prev - t0) / per + 1e-9)

    def start(self, t0: float, t_end: float) -> None: ...
    def progress(self, t: float) -> None: ...
    def handle(self, t: float, y: np.ndarray, solution: Solution) -> None: ...
    def finish(self) -> None: ...


class ProgressBar(Tracker):
    """A tqdm bar over simulated time (off when stderr is not a terminal unless forced)."""

    def __init__(self, enabled: bool | None = None, desc: str = "solve"):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.desc = desc
        self.bar = None

    def start(self, t0, t_end):
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=t_end - t0, desc=self.desc, unit="t", leave=False,
                            bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}]")
            self.t0 = t0

    def progress(self, t):
        if self.bar is not None:
            self.bar.n = t - self.t0
            self.bar.refresh()

    def handle(self, t, y, solution):
        if self.bar is not None and "loss_train" in solution.observables:
            self.bar.set_postfix(loss=f"{solution.observables['loss_train'][-1]:.4g}", refresh=False)

    def finish(self):
        if self.bar is not None:
            self.bar.close()


class Callback(Tracker):
    """Call ``fn(t, y, solution)`` at save times (every ``interval`` of simulated time if given)."""

    def __init__(self, fn: Callable, interval: float | None = None):
        super().__init__(interval)
        self.fn = fn

    def handle(self, t, y, solution):
        self.fn(t, y, solution)


def _advice(stepper, status) -> str:
    if status == NEWTON:
        it = f"solver.newton_maxiter = {getattr(stepper, 'newton_maxiter', '?')}"
        if getattr(stepper, "adaptive", False):
            return (f"Newton did not converge within {it} iterations even at the smallest step tried: raise "
                    "solver.newton_maxiter or solver.max_rejections, or lower solver.dt_min")
        return (f"Newton did not converge within {it} iterations, neither with a fresh Jacobian, nor from Z = y, "
                f"nor re-linearized at every iterate (damped): raise solver.newton_maxiter or reduce "
                f"solver.dt = {getattr(stepper, 'dt', float('nan')):g}")
    if getattr(stepper, "adaptive", False):
        if status == STEP_SIZE:
            return "the problem may be stiff: loosen rtol/atol, lower dt_min, or reduce the learning rates"
        return "tighten rtol or reduce the learning rates"
    return "reduce the step size or the learning rates"


def _due(tracker, t0, t_prev, t) -> bool:
    due = getattr(tracker, "due", None)     # duck-typed trackers (start/progress/handle/finish) run always
    return True if due is None else due(t0, t_prev, t)


def _blame(system, t, y) -> str:
    """Name the parameter block whose drift is non-finite or largest at the last good state."""
    with np.errstate(all="ignore"):
        dy = system.rhs(t, y)
    worst, worst_val = "", -1.0
    for name, block in system.views(dy).items():
        if not np.all(np.isfinite(block)):
            return name
        val = float(np.max(np.abs(block))) if block.size else 0.0
        if val > worst_val:
            worst, worst_val = name, val
    return worst


def integrate(system, stepper: Stepper, t_end: float, *, times: Iterable[float] | None = None,
              save_every: float | None = None, parameters: str = "all", trackers: Sequence[Tracker] = (),
              progress: bool | None = None, y0: np.ndarray | None = None, t0: float = 0.0,
              chunk_seconds: float = 0.25, checkpoint=None, checkpoint_every: int = 1,
              resume: bool = False) -> Solution:
    """Solve the system from ``t0`` to ``t_end`` and return a :class:`Solution`.

    ``parameters``: ``"all"`` stores the state at every save time, ``"final"`` only at the
    end, ``"none"`` never (observables are always stored).  ``checkpoint``: a file written
    atomically at every ``checkpoint_every``-th save time (:mod:`mfpde.solvers.checkpoint`);
    with ``resume`` and an existing file the solve continues from it (bit for bit).
    """
    checks.choice(parameters, ("all", "final", "none"), "output.parameters")
    ts = save_times(t_end, every=save_every, times=times, t0=t0)
    check = getattr(stepper, "check_times", None)
    if check is not None:
        check(ts)            # e.g. a fixed step longer than a save interval: refused before any work
    if y0 is not None:
        try:
            y0 = np.asarray(y0, dtype=float)
        except (TypeError, ValueError):
            raise ConfigError("y0", "expected a flat state vector of numbers") from None
        if y0.shape != (system.size,) or not np.all(np.isfinite(y0)):
            raise ConfigError("y0", f"expected {system.size} finite numbers (the flat state), got shape {y0.shape}")
    y = (system.y0 if y0 is None else y0).copy()
    sol = Solution(system, stepper.describe())
    ck = None
    if checkpoint is not None:
        from mfpde.solvers import checkpoint as ckmod

        fp = ckmod.fingerprint(system, stepper, t_end, ts)
        if resume and os.path.exists(checkpoint):
            ck = ckmod.load(checkpoint)
            if ck["fingerprint"] != fp:
                raise ConfigError("--resume", f"checkpoint {str(checkpoint)!r} belongs to another problem or other solve settings")
        ck_tracker = ckmod.Checkpoint(checkpoint, stepper, fp, checkpoint_every)
        trackers = [ck_tracker, *trackers]   # checkpoint first: later trackers may stop the run
    trackers = [ProgressBar(progress), *trackers]
    for tr in trackers:
        tr.start(t0, t_end)
    wall0 = _time.perf_counter()
    t = t0
    max_steps = 1
    if ck is None:
        sol.record(t, y, parameters == "all")
        for tr in trackers:
            if _due(tr, t0, None, t):
                tr.handle(t, y, sol)
        remaining = ts[1:]
    else:   # continue from the checkpoint: its solution so far, state, time and stepper state
        y[:] = ck["y"]
        t = ck["t"]
        sol.times, sol.state_times, sol.states = ck["times"], ck["state_times"], ck["states"]
        sol.observables = {k: [np.asarray(x) if np.ndim(x) else float(x) for x in v] for k, v in ck["observables"].items()}
        ckmod.restore_stepper(stepper, ck)
        ck_tracker.index = ck["save_index"] + 1
        remaining = ts[ts > t + 1e-12 * max(1.0, abs(t_end))]
    t_save = t        # the last save time
    try:
        for target in remaining:
            while True:
                c0 = _time.perf_counter()
                res = stepper.advance(y, t, float(target), max_steps)
                elapsed = _time.perf_counter() - c0
                if res.steps > 0:
                    per = elapsed / res.steps
                    max_steps = int(min(max(1, chunk_seconds / max(per, 1e-9)), 10 * max_steps + 10))
                if res.status not in (OK, MAX_STEPS):
                    layer = _blame(system, res.t, y)
                    msg = (f"{STATUS_TEXT[res.status]} at t ≈ {res.t:.6g} after step {stepper.stats['steps'] + 1} "
                           f"(largest/non-finite drift in {layer!r}); the last good state (t = {res.t:.6g}) and all "
                           f"earlier save times are kept — {_advice(stepper, res.status)}")
                    sol.record_last_good(res.t, y)
                    sol.status, sol.message = "blow-up", msg
                    sol.stats.update(stepper.stats, wall_seconds=_time.perf_counter() - wall0)
                    raise BlowUpError(msg, partial=sol, time=res.t, step=stepper.stats["steps"] + 1, layer=layer)
                t = res.t
                for tr in trackers:
                    tr.progress(t)
                if res.status == OK:
                    break
            t_prev, t = t_save, float(target)
            t_save = t
            last = target == ts[-1]
            sol.record(t, y, parameters == "all" or (parameters == "final" and last))
            for tr in trackers:
                if _due(tr, t0, t_prev, t):
                    tr.handle(t, y, sol)
    finally:
        for tr in trackers:
            tr.finish()
    sol.status = "completed"
    sol.stats.update(stepper.stats, wall_seconds=_time.perf_counter() - wall0)
    return sol

"""Mean-field SGD of finite networks (Finite room): the compiled Euler loop, train, checks, checkpoints.

SGD is explicit Euler with Δt = ε on a minibatch of the network built by
:mod:`mfpde.finite.network`: the compiled loop :func:`sgd_steps` calls the same
:func:`mfpde.system.kernels.rhs` as the limit solver with the batch as data.  Modes:

* ``full``      — full-batch GD on the training set (exactly Euler on the limit system's data);
* ``online``    — fresh samples from the training *law* every step (batch B);
* ``minibatch`` — batches of B drawn without replacement from the finite training set, epoch
  by epoch.

Imports numpy and mfpde (Problem, System, Stepper and Store rooms; mfpde.finite.network).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time as _time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mfpde import checks

from mfpde.system import kernels
from mfpde._jit import njit
from mfpde.errors import BlowUpError, ConfigError
from mfpde.finite.network import (_widths, initial_network_state, network_problem, network_statistics,
                                   run_seed)
from mfpde.problem.model import Problem
from mfpde.system.system import System

MODES = ("full", "online", "minibatch")
BATCH_BYTES = 32 * 2**20  # pre-generated batch buffer per chunk


# ----------------------------------------------------------------------------- compiled SGD
@njit
def sgd_steps(y, dy, t0, eps, n, Xb, Yb, rho, base, bound2):
    """n Euler steps y += ε·drift(batch k); batches Xb[k], Yb[k] (or Xb[0] for every step if
    Xb holds one batch); returns (status, steps done).

    ``base`` is the system's kernel tuple; its data entries are replaced by the batch.
    Stops before committing a non-finite (1) or too-large (2) state.
    """
    lay, omega, X0, Y0, rho0, sched, sched_flat, lossp, work, fns = base
    N = y.shape[0]
    shared = Xb.shape[0] == 1   # full batch: the same data every step
    cur = y
    nxt = dy
    status = 0
    done = 0
    for k in range(n):
        kb = 0 if shared else k
        args = (lay, omega, Xb[kb], Yb[kb], rho, sched, sched_flat, lossp, work, fns)
        kernels.rhs(t0 + k * eps, cur, nxt, args)
        # one fused pass: the new state replaces the drift in place, its norm is checked;
        # the buffers then swap, so the previous state survives a failed check
        nrm = 0.0
        for i in range(N):
            v = cur[i] + eps * nxt[i]
            nxt[i] = v
            nrm += v * v
        if not (nrm <= bound2):
            status = 1 if not math.isfinite(nrm) else 2
            break
        tmp = cur
        cur = nxt
        nxt = tmp
        done += 1
    if done % 2 == 1:
        y[:] = dy
    return status, done


@dataclass
class FiniteRun:
    """Recorded observables of one finite-width training run."""

    width: tuple[int, ...]
    replica: int
    times: list[float] = field(default_factory=list)
    observables: dict[str, list] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    message: str = ""
    seed: dict[str, Any] = field(default_factory=dict)
    states: list[np.ndarray] = field(default_factory=list)   # flat states at record times (snapshots)
    nodes: list[np.ndarray] = field(default_factory=list)    # the network's sampled features per layer
    system: Any = None                                       # the network's System (layout, weights)

    def array(self, name: str) -> np.ndarray:
        return np.asarray(self.observables[name], dtype=float)

def train(problem: Problem, widths, *, mode: str = "full", batch: int = 1, lr: float = 0.01,
          t_end: float = 1.0, record_times=None, replica: int = 0, law=None, statistics: bool = True,
          bound: float = 1e12, progress=None, seed: np.random.SeedSequence | None = None,
          coupling: bool = False, snapshots: bool = False, checkpoint=None, checkpoint_every: int | None = None,
          resume: bool = False) -> FiniteRun:
    """Train one finite network of ``widths`` by mean-field SGD (ε = ``lr``) up to ``t_end``.

    Records train/test loss and error, ŷ at the probes and (``statistics``) weight
    quantiles, pre-activation spread and top singular values at ``record_times``, which
    like ``t_end`` must lie on the step grid t = kε (up to a relative 1e-9 per step; else
    ConfigError naming ``sgd.lr``: an SGD state exists only there).  ``law`` (a population law with ``sample``) is needed for
    ``mode = "online"``.  ``snapshots`` keeps the flat state at every record time
    (``run.states``); ``coupling`` also solves the limit with this network's sampled
    features as tracer nodes and records the per-weight coupling error
    (:func:`mfpde.finite.coupling.coupling_error`, SPEC §4 "Tracer nodes").

    ``checkpoint`` (a file) with ``checkpoint_every = K`` writes the run in progress (state,
    step, data RNG state, minibatch permutation and position, records so far) atomically at
    the first batch-chunk boundary at least K steps after the previous checkpoint; chunk
    boundaries depend on the configuration only, so with ``resume`` an existing checkpoint
    is continued and the run is bit-for-bit that of an uninterrupted one.  A checkpoint of
    other settings is refused (ConfigError).
    """
    check_arguments(problem, widths, mode=mode, batch=batch, lr=lr, t_end=t_end, law=law, record_times=record_times)
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0:
        raise ConfigError("solver.bound", f"must be a number > 0 (inf allowed), got {bound!r}")
    replica = checks.integer(int(replica) if isinstance(replica, np.integer) else replica, "replica", lo=0)
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or
                                         not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1):
        raise ConfigError("--checkpoint-every", f"must be an integer >= 1, got {checkpoint_every!r}")
    if checkpoint_every is not None and checkpoint is None:
        raise ConfigError("--checkpoint-every", "needs a checkpoint file")
    L = problem.model.L
    widths = _widths(widths, L)
    ss = seed if seed is not None else run_seed(problem, widths, replica)
    init_ss, data_ss = ss.spawn(2)
    init_rng, data_rng = np.random.default_rng(init_ss), np.random.default_rng(data_ss)
    net = network_problem(problem, widths, init_rng)
    system = System(net)
    y = initial_network_state(system, init_rng)
    n_total = int(round(t_end / lr))
    if record_times is None:
        record_times = [0.0, t_end]
    rec_steps = sorted({min(n_total, max(0, int(round(t / lr)))) for t in record_times} | {0, n_total})
    run = FiniteRun(widths, replica, seed={"entropy": str(ss.entropy), "spawn_key": list(ss.spawn_key)})
    dy = np.empty_like(y)
    bound2 = float(bound) ** 2
    d, K = problem.model.input_dim, problem.model.outputs
    M = problem.train.M
    B = M if mode == "full" else int(batch)
    rho = np.full(B, 1.0 / B) if mode != "full" else np.ascontiguousarray(problem.train.weights, dtype=float)
    chunk_max = max(1, BATCH_BYTES // (8 * B * (d + K)))
    perm = np.empty(0, dtype=np.int64)
    pos = 0
    Xtr, Ytr = np.asarray(problem.train.X), np.asarray(problem.train.Y)
    Xfull = np.ascontiguousarray(system.sysargs[2][None, :, :])
    Yfull = np.ascontiguousarray(system.sysargs[3][None, :, :])
    batch_args = None
    wall0 = _time.perf_counter()
    step = 0

    keep = snapshots or coupling
    ck_fp = _checkpoint_fingerprint(problem, ss, widths, replica, mode, B, lr, rec_steps, statistics, bound,
                                    keep, chunk_max) if checkpoint is not None else ""
    wall_before = 0.0

    def save_checkpoint():
        from mfpde.store.runs import write_checkpoint

        arrays = {"y": y, "perm": perm, "times": np.asarray(run.times, float)}
        for key, vals in run.observables.items():
            arrays[f"observables/{key}"] = np.stack(vals)
        if keep:
            arrays["states"] = np.stack(run.states)
        write_checkpoint(checkpoint, {"fingerprint": ck_fp, "step": step, "pos": pos,
                                      "rng": json.dumps(data_rng.bit_generator.state),
                                      "wall_seconds": wall_before + _time.perf_counter() - wall0}, arrays)

    def record(k):
        run.times.append(k * lr)
        if keep:
            run.states.append(y.copy())
        for key, v in system.observe(y).items():
            run.observables.setdefault(key, []).append(np.array(v, dtype=float))
        if statistics:
            for key, v in network_statistics(system, y).items():
                run.observables.setdefault(key, []).append(np.array(v, dtype=float))

    if resume and checkpoint is not None and os.path.exists(checkpoint):
        from mfpde.store.runs import load_checkpoint

        a, arr = load_checkpoint(checkpoint)
        if a.get("fingerprint") != ck_fp:
            raise ConfigError("--resume", f"checkpoint {str(checkpoint)!r} belongs to another run or other SGD settings")
        step, pos, wall_before = int(a["step"]), int(a["pos"]), float(a["wall_seconds"])
        y[:] = arr["y"]
        perm = np.asarray(arr["perm"], dtype=np.int64)
        data_rng.bit_generator.state = json.loads(a["rng"])
        run.times = arr["times"].tolist()
        run.observables = {k[len("observables/"):]: list(v) for k, v in arr.items() if k.startswith("observables/")}
        run.states = list(arr["states"]) if keep else []
    else:
        record(0)
    last_ck = step
    for target in rec_steps[1:]:
        if target <= step:   # recorded before the checkpoint this run resumed from
            continue
        while step < target:
            n = min(target - step, chunk_max)
            if mode == "full":
                status, done = sgd_steps(y, dy, step * lr, lr, n, Xfull, Yfull, rho, system.sysargs, bound2)
            else:
                if mode == "online":   # chunk boundaries depend on the configuration only: reproducible
                    ds = law.sample(data_rng, n * B)
                    Xb = np.ascontiguousarray(np.asarray(ds.X).reshape(n, B, d))
                    Yb = np.ascontiguousarray(np.asarray(ds.Y).reshape(n, B, K))
                else:
                    idx = np.empty((n, B), dtype=np.int64)
                    for k in range(n):
                        if pos + B > len(perm):
                            perm = data_rng.permutation(M)
                            pos = 0
                        idx[k] = perm[pos:pos + B]
                        pos += B
                    Xb = np.ascontiguousarray(Xtr[idx])
                    Yb = np.ascontiguousarray(Ytr[idx])
                if batch_args is None:
                    batch_args = system.make_args(Xb[0], Yb[0], rho)
                status, done = sgd_steps(y, dy, step * lr, lr, n, Xb, Yb, rho, batch_args, bound2)
            step += done
            if status:
                run.status = "blow-up"
                run.message = (f"{'non-finite state' if status == 1 else 'state norm exceeded its bound'} at step {step + 1} "
                               f"(t ≈ {step * lr:.6g}, width {widths}); reduce the learning rate")
                if not run.times or step * lr > run.times[-1]:
                    record(step)    # the last good state; at a record time it is recorded already
                run.stats.update(steps=step, wall_seconds=wall_before + _time.perf_counter() - wall0)
                raise BlowUpError(run.message, partial=run, time=step * lr, step=step + 1)
            if step == target:
                record(step)
            if checkpoint_every is not None and step - last_ck >= checkpoint_every:
                save_checkpoint()   # only at chunk boundaries: they depend on the configuration only
                last_ck = step
    run.status = "completed"
    run.nodes = [np.array(r.nodes) for r in net.embedding.rules]
    run.system = system
    if coupling:
        from mfpde.finite.coupling import coupling_error

        for key, vals in coupling_error(problem, run, lr).items():
            run.observables[key] = list(vals)
    if not snapshots:
        run.states = []
    run.stats.update(steps=step, wall_seconds=wall_before + _time.perf_counter() - wall0)
    return run


def check_arguments(problem: Problem, widths, *, mode: str, batch, lr, t_end, law, record_times=None) -> None:
    """Validate the arguments of :func:`train` (ConfigError naming the key), allocating nothing.

    ``t_end`` and every ``record_times`` entry must be a whole number of SGD steps
    (:func:`check_step_grid`); pass the record times to have them checked here too.
    """
    checks.choice(mode, MODES, "sgd.mode", what="mode")
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ConfigError("sgd.lr", f"must be a finite number > 0, got {lr!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ConfigError("sgd.batch", f"must be an integer >= 1, got {batch!r}")
    if mode == "online" and law is None:
        raise ConfigError("sgd.mode", "online SGD needs a population law for data.train (kind = teacher or gaussian_classes)")
    if mode == "minibatch" and batch > problem.train.M:
        raise ConfigError("sgd.batch", f"batch {batch} exceeds the training set size {problem.train.M}")
    if mode == "minibatch" and not np.allclose(problem.train.weights, 1.0 / problem.train.M, rtol=1e-12, atol=0):
        raise ConfigError("sgd.mode", "minibatch mode draws training points uniformly: data.train must be a finite set "
                          "with equal weights (use mode = \"full\" or \"online\" for a quadrature-integrated law)")
    _check_network_size(problem, _widths(widths, problem.model.L), t_end, lr, batch if mode != "full" else 1)
    check_step_grid(float(lr), float(t_end), record_times)


def check_step_grid(lr: float, t_end: float, record_times=None) -> None:
    """ConfigError naming ``sgd.lr`` unless t_end and every record time are whole numbers of steps.

    SGD's state exists only at t = k·lr: a t_end or record time off that grid (beyond a
    relative 1e-9 per step) used to be rounded to it silently — ``lr > 2·t_end`` trained
    nothing and was marked completed.  The message names the nearest learning rates that fit.
    """
    from mfpde.solvers.base import whole_steps

    times = [t_end]
    if record_times is not None:
        if isinstance(record_times, (str, bytes)) or not hasattr(record_times, "__iter__"):
            raise ConfigError("record_times", f"expected a list of times, got {record_times!r}")
        for t in record_times:
            t = checks.number(t, "record_times")
            if not 0.0 <= t <= t_end * (1 + 1e-12):
                raise ConfigError("record_times", f"every time must lie in [0, t_end = {t_end:g}], got {t:g}")
            times.append(t)
    for i, t in enumerate(times):
        n = whole_steps(t, lr)
        if t > 0 and not n:
            what = "t_end" if i == 0 else "the record (save) time"
            raise ConfigError("sgd.lr", f"{lr:.12g} does not divide {what} {t:.12g} ({t / lr:.6g} steps): SGD states "
                              f"exist only at t = k·lr; {_fitting_lrs(lr, t_end, times)} (--lr or sgd.lr), or "
                              f"times that are multiples of it")


def _fitting_lrs(lr: float, t_end: float, times) -> str:
    """The nearest learning rates t_end/m below and above lr that put every time on the grid."""
    from mfpde.solvers.base import whole_steps

    x = t_end / lr
    found = []
    for ms in (range(max(1, math.ceil(x)), max(1, math.ceil(x)) + 200),
               range(max(1, math.floor(x)), max(0, math.floor(x) - 200), -1)):
        for m in ms:
            cand = t_end / m
            if cand != lr and all(t == 0 or whole_steps(t, cand) for t in times):
                found.append(cand)
                break
    if not found:
        return "use a learning rate that divides t_end and every record time"
    return "nearest that fit: " + " or ".join(f"{c:.12g}" for c in sorted(set(found)))


def _check_network_size(problem: Problem, widths, t_end, lr, batch) -> None:
    """Refuse networks, step counts and batches too large to hold or run, before allocating anything."""
    from mfpde.problem.config import MAX_DATA, MAX_STATE, MAX_STEPS

    m = problem.model
    n_state = widths[0] * m.input_dim + sum(a * b for a, b in zip(widths, widths[1:])) + widths[-1] * m.outputs
    if n_state > MAX_STATE:
        raise ConfigError("sgd.widths", f"a network of widths {list(widths)} has {n_state:.3g} weights "
                          f"(> {MAX_STATE:.0e}); use smaller widths")
    if not (isinstance(t_end, (int, float)) and math.isfinite(t_end) and t_end > 0):
        raise ConfigError("solver.t_end", f"must be a finite number > 0, got {t_end!r}")
    if t_end / lr > MAX_STEPS:
        raise ConfigError("sgd.lr", f"t_end/lr = {t_end / lr:.3g} steps is more than {MAX_STEPS:.0e}")
    if batch * (m.input_dim + m.outputs) > MAX_DATA:
        raise ConfigError("sgd.batch", f"a batch of {batch} points in dimension {m.input_dim} + {m.outputs} "
                          f"is more than {MAX_DATA:.0e} numbers")


def _checkpoint_fingerprint(problem: Problem, ss, widths, replica, mode, B, lr, rec_steps, statistics, bound,
                            keep, chunk_max) -> str:
    """Hash of everything that determines a run's trajectory (a checkpoint only resumes its own run)."""
    from mfpde.checks import to_toml

    h = hashlib.sha256((to_toml(problem.config) if problem.config else repr(problem.name)).encode())
    h.update(json.dumps({"entropy": str(ss.entropy), "spawn_key": [int(k) for k in ss.spawn_key],
                         "widths": list(widths), "replica": int(replica), "mode": mode, "batch": int(B),
                         "lr": repr(float(lr)), "record_steps": [int(k) for k in rec_steps],
                         "statistics": bool(statistics), "bound": repr(float(bound)), "keep": bool(keep),
                         "chunk_max": int(chunk_max)}, sort_keys=True).encode())
    return h.hexdigest()

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
import inspect
import json
import math
import os
import time as _time
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from mfpde import checks

from mfpde.system import kernels
from mfpde._jit import njit
from mfpde.errors import BlowUpError, ConfigError
from mfpde.finite.network import (_widths, initial_network_state, network_noise, network_problem,
                                  network_statistics, run_seed)
from mfpde.problem.model import Problem
from mfpde.solvers.base import BOUND, NONFINITE, OK, STATUS_TEXT
from mfpde.system.system import SysArgs, System

MODES = ("full", "online", "minibatch")
BATCH_BYTES = 32 * 2**20  # pre-generated batch buffer per chunk


# ----------------------------------------------------------------------------- compiled SGD
@njit
def sgd_steps(y, dy, t0, eps, n, Xb, Yb, rho, base, bound2):
    """n Euler steps y += ε·drift(batch k); batches Xb[k], Yb[k] (or Xb[0] for every step if
    Xb holds one batch); returns (status, steps done).

    ``base`` is the system's :class:`~mfpde.system.system.SysArgs`; its data entries are replaced
    by the batch.  Stops before committing a non-finite (NONFINITE) or too-large (BOUND) state.

    Not :func:`mfpde.solvers.explicit.rk_fixed` with the Euler tableau, although the arithmetic
    is the same (full batch: ``test_full_batch_gd_equals_solver_euler_on_the_network_nodes``):
    rk_fixed takes one data set per call, so a new batch every step costs one call per step, a
    separate stage buffer and a copy back — bit for bit the same states, but 2–4× the time per
    step at B = 1 (measured, 2 layers, d = 16: 108 vs 436 µs at width 256, 3.4 vs 6.9 ms at 1024).
    """
    N = y.shape[0]
    shared = Xb.shape[0] == 1   # full batch: the same data every step
    cur = y
    nxt = dy
    status = OK
    done = 0
    for k in range(n):
        kb = 0 if shared else k
        args = SysArgs(base.lay, base.omega, Xb[kb], Yb[kb], rho, base.sched, base.sched_flat, base.lossp, base.work,
                       base.fns, base.variant)
        kernels.rhs(t0 + k * eps, cur, nxt, args)
        # one fused pass: the new state replaces the drift in place, its norm is checked;
        # the buffers then swap, so the previous state survives a failed check
        nrm = 0.0
        for i in range(N):
            v = cur[i] + eps * nxt[i]
            nxt[i] = v
            nrm += v * v
        if not (nrm <= bound2):
            status = NONFINITE if not math.isfinite(nrm) else BOUND
            break
        tmp = cur
        cur = nxt
        nxt = tmp
        done += 1
    if done % 2 == 1:
        for i in range(N):   # a loop: an array assignment compiles Numba's shape-error formatting (seconds)
            y[i] = dy[i]
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

@dataclass(frozen=True)
class TrainOptions:
    """The SGD settings of one :func:`train` run: a frozen description, checked by :meth:`check`.

    ``mode`` (:data:`MODES`) and ``batch`` B say where each step's data come from; ``lr`` is
    ε, so t = kε, and ``t_end`` and every ``record_times`` entry must lie on that grid
    (``record_times`` None: [0, t_end]).  ``statistics`` records weight quantiles,
    pre-activation spread and singular values; ``bound`` stops a run whose state norm
    exceeds it; ``snapshots`` keeps the flat state at every record time; ``coupling`` also
    solves the limit with the network's features as tracers (SPEC §4).  A configuration's
    options are :meth:`from_config`.
    """

    mode: str = "full"
    batch: int = 1
    lr: float = 0.01
    t_end: float = 1.0
    record_times: tuple | None = None
    statistics: bool = True
    bound: float = 1e12
    coupling: bool = False
    snapshots: bool = False

    def __post_init__(self):
        rt = self.record_times
        if rt is not None and not isinstance(rt, (str, bytes)) and hasattr(rt, "__iter__"):
            object.__setattr__(self, "record_times", tuple(rt))   # a list or array: frozen as a tuple

    @classmethod
    def from_config(cls, c, **overrides) -> "TrainOptions":
        """The options of a configuration's runs: ``[sgd]`` mode, batch, lr (default
        ``solver.dt``), statistics and coupling, ``solver.t_end`` and ``solver.bound``, and the
        solver's save times as record times.  ``overrides`` (None = not given) replace fields."""
        from mfpde.finite.ensemble import record_times

        s = c.solver
        base = cls(mode=c.sgd.mode, batch=c.sgd.batch, lr=c.sgd.lr or s.dt, t_end=s.t_end, record_times=record_times(c),
                   statistics=c.sgd.statistics, bound=s.bound, coupling=c.sgd.coupling)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def check(self, problem: Problem, widths, law=None) -> None:
        """ConfigError naming the key unless these options can train ``widths`` of ``problem``."""
        check_arguments(problem, widths, mode=self.mode, batch=self.batch, lr=self.lr, t_end=self.t_end, law=law,
                        record_times=self.record_times)
        b = self.bound
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
            raise ConfigError("solver.bound", f"must be a number > 0 (inf allowed), got {b!r}")

    def record_steps(self) -> list[int]:
        """The SGD steps recorded: the record times on the step grid, with 0 and the last step."""
        n_total = int(round(self.t_end / self.lr))
        times = [0.0, self.t_end] if self.record_times is None else self.record_times
        return sorted({min(n_total, max(0, int(round(t / self.lr)))) for t in times} | {0, n_total})


class _Batches:
    """The data of the SGD steps, a chunk of steps at a time; its state goes into checkpoints.

    ``full``: the training set every step (the system's own data); ``online``: n·B fresh draws
    of the law per chunk of n steps; ``minibatch``: B points a step, taken in order from
    random permutations of the training set, epoch by epoch.  Chunks hold at most
    ``chunk_max`` steps (:data:`BATCH_BYTES` of batch data), so chunk boundaries depend on the
    configuration only and a resumed run draws exactly what an uninterrupted one draws.
    """

    def __init__(self, problem: Problem, system: System, mode: str, batch: int, law, rng: np.random.Generator):
        self.mode, self.law, self.rng, self.system = mode, law, rng, system
        self.d, self.K = problem.model.input_dim, problem.model.outputs
        self.M = problem.train.M
        self.B = B = self.M if mode == "full" else int(batch)
        self.rho = np.full(B, 1.0 / B) if mode != "full" else np.ascontiguousarray(problem.train.weights, dtype=float)
        self.chunk_max = max(1, BATCH_BYTES // (8 * B * (self.d + self.K)))
        self.perm = np.empty(0, dtype=np.int64)   # minibatch: the epoch's permutation and the position in it
        self.pos = 0
        self.X, self.Y = np.asarray(problem.train.X), np.asarray(problem.train.Y)
        self.args = None
        if mode == "full":
            self.full = (np.ascontiguousarray(system.sysargs.X[None, :, :]),
                         np.ascontiguousarray(system.sysargs.Y[None, :, :]))
            self.args = system.sysargs

    def next(self, n: int):
        """(Xb [n or 1, B, d], Yb [n or 1, B, K], kernel arguments) of the next n steps."""
        if self.mode == "full":
            return self.full + (self.args,)
        B = self.B
        if self.mode == "online":
            ds = self.law.sample(self.rng, n * B)
            Xb = np.ascontiguousarray(np.asarray(ds.X).reshape(n, B, self.d))
            Yb = np.ascontiguousarray(np.asarray(ds.Y).reshape(n, B, self.K))
        else:
            idx = np.empty((n, B), dtype=np.int64)
            for k in range(n):
                if self.pos + B > len(self.perm):
                    self.perm = self.rng.permutation(self.M)
                    self.pos = 0
                idx[k] = self.perm[self.pos:self.pos + B]
                self.pos += B
            Xb = np.ascontiguousarray(self.X[idx])
            Yb = np.ascontiguousarray(self.Y[idx])
        if self.args is None:
            self.args = self.system.make_args(Xb[0], Yb[0], self.rho)
        return Xb, Yb, self.args


def train(problem: Problem, widths, options: TrainOptions | None = None, *, replica: int = 0, law=None,
          seed: np.random.SeedSequence | None = None, fixed_nodes=None, checkpoint=None,
          checkpoint_every: int | None = None, resume: bool = False, progress=None, **settings) -> FiniteRun:
    """Train one finite network of ``widths`` by mean-field SGD with ``options`` (:class:`TrainOptions`).

    ``settings`` are TrainOptions fields by keyword (``mode="online", lr=0.01, t_end=1.0``,
    …), on top of ``options`` or of the defaults.  Records train/test loss and error, ŷ at
    the probes and (``statistics``) weight quantiles, pre-activation spread and top singular
    values at the record times, which like ``t_end`` must lie on the step grid t = kε (up to
    a relative 1e-9 per step; else ConfigError naming ``sgd.lr``: an SGD state exists only
    there).  ``law`` (a population law with ``sample``) is needed for ``mode = "online"``.
    ``seed`` replaces the run's SeedSequence (default :func:`run_seed` of ``replica``);
    ``fixed_nodes`` = {l: nodes} gives hidden layer l those features
    (:func:`~mfpde.finite.network.network_problem`).  ``snapshots`` keeps the flat state at
    every record time (``run.states``); ``coupling`` also solves the limit with this
    network's sampled features as tracer nodes and records the per-weight coupling error
    (:func:`mfpde.finite.coupling.coupling_error`, SPEC §4 "Tracer nodes").  ``progress``: a
    callable ``progress(done, total, t)`` called after every record (``done`` of ``total``
    record times, at t); a bool is accepted for the API's symmetry with ``mfpde.solve``, and a
    run reports nothing itself.

    ``checkpoint`` (a file) with ``checkpoint_every = K`` writes the run in progress (state,
    step, data RNG state, minibatch permutation and position, records so far) atomically at
    the first batch-chunk boundary at least K steps after the previous checkpoint; chunk
    boundaries depend on the configuration only, so with ``resume`` an existing checkpoint
    is continued and the run is bit-for-bit that of an uninterrupted one.  A checkpoint of
    other settings is refused (ConfigError).
    """
    opts = _options(options, settings)
    opts.check(problem, widths, law)
    replica = checks.integer(int(replica) if isinstance(replica, np.integer) else replica, "replica", lo=0)
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or
                                         not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1):
        raise ConfigError("--checkpoint-every", f"must be an integer >= 1, got {checkpoint_every!r}")
    if checkpoint_every is not None and checkpoint is None:
        raise ConfigError("--checkpoint-every", "needs a checkpoint file")
    widths = _widths(widths, problem.model.L)
    ss = seed if seed is not None else run_seed(problem, widths, replica)
    init_ss, data_ss = ss.spawn(2)
    init_rng, data_rng = np.random.default_rng(init_ss), np.random.default_rng(data_ss)
    net = network_problem(problem, widths, init_rng, fixed_nodes=fixed_nodes)
    system = System(net)
    y = initial_network_state(system, init_rng, network_noise(problem))
    lr = opts.lr
    rec_steps = opts.record_steps()
    run = FiniteRun(widths, replica, seed={"entropy": str(ss.entropy), "spawn_key": list(ss.spawn_key)})
    dy = np.empty_like(y)
    bound2 = float(opts.bound) ** 2
    batches = _Batches(problem, system, opts.mode, opts.batch, law, data_rng)
    wall0 = _time.perf_counter()
    step = 0

    keep = opts.snapshots or opts.coupling
    ck_fp = _checkpoint_fingerprint(problem, ss, widths, replica, opts, batches, rec_steps, keep,
                                    _fixed_digest(net, fixed_nodes)) if checkpoint is not None else ""
    wall_before = 0.0

    def save_checkpoint():
        from mfpde.store.runs import write_checkpoint

        arrays = {"y": y, "perm": batches.perm, "times": np.asarray(run.times, float)}
        for key, vals in run.observables.items():
            arrays[f"observables/{key}"] = np.stack(vals)
        if keep:
            arrays["states"] = np.stack(run.states)
        write_checkpoint(checkpoint, {"fingerprint": ck_fp, "step": step, "pos": batches.pos,
                                      "rng": json.dumps(data_rng.bit_generator.state),
                                      "wall_seconds": wall_before + _time.perf_counter() - wall0}, arrays)

    hook = progress if callable(progress) else None

    def record(k):
        run.times.append(k * lr)
        if keep:
            run.states.append(y.copy())
        for key, v in system.observe(y).items():
            run.observables.setdefault(key, []).append(np.array(v, dtype=float))
        if opts.statistics:
            for key, v in network_statistics(system, y).items():
                run.observables.setdefault(key, []).append(np.array(v, dtype=float))
        if hook is not None:
            hook(len(run.times), len(rec_steps), k * lr)

    if resume and checkpoint is not None and os.path.exists(checkpoint):
        from mfpde.store.runs import load_checkpoint

        a, arr = load_checkpoint(checkpoint)
        if a.get("fingerprint") != ck_fp:
            raise ConfigError("--resume", f"checkpoint {str(checkpoint)!r} belongs to another run or other SGD settings")
        step, batches.pos, wall_before = int(a["step"]), int(a["pos"]), float(a["wall_seconds"])
        y[:] = arr["y"]
        batches.perm = np.asarray(arr["perm"], dtype=np.int64)
        data_rng.bit_generator.state = json.loads(a["rng"])
        run.times = arr["times"].tolist()
        run.observables = {k[len("observables/"):]: list(v) for k, v in arr.items() if k.startswith("observables/")}
        run.states = list(arr["states"]) if keep else []
        if hook is not None and run.times:   # the records restored from the checkpoint
            hook(len(run.times), len(rec_steps), run.times[-1])
    else:
        record(0)
    last_ck = step
    for target in rec_steps[1:]:
        if target <= step:   # recorded before the checkpoint this run resumed from
            continue
        while step < target:
            n = min(target - step, batches.chunk_max)
            Xb, Yb, args = batches.next(n)
            status, done = sgd_steps(y, dy, step * lr, lr, n, Xb, Yb, batches.rho, args, bound2)
            step += done
            if status:
                run.status = "blow-up"
                run.message = (f"{STATUS_TEXT[status]} at step {step + 1} "
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
    if opts.coupling:
        from mfpde.finite.coupling import coupling_error

        for key, vals in coupling_error(problem, run, lr).items():
            run.observables[key] = list(vals)
    if not opts.snapshots:
        run.states = []
    run.stats.update(steps=step, wall_seconds=wall_before + _time.perf_counter() - wall0)
    return run


def _options(options: TrainOptions | None, settings: dict) -> TrainOptions:
    """``options`` (default: TrainOptions()) with the keyword ``settings`` of :func:`train` applied."""
    names = [f.name for f in fields(TrainOptions)]
    for k in settings:
        if k not in names:
            raise TypeError(f"train() got an unexpected keyword argument {k!r} (TrainOptions fields: {', '.join(names)})")
    if options is None:
        return TrainOptions(**settings)
    if not isinstance(options, TrainOptions):
        raise TypeError(f"train() options must be a TrainOptions, got {type(options).__name__}")
    return replace(options, **settings) if settings else options


# every keyword train() takes: its run arguments and the TrainOptions fields
TRAIN_KEYWORDS = tuple(k for k, p in inspect.signature(train).parameters.items() if p.kind is p.KEYWORD_ONLY) + \
    tuple(f.name for f in fields(TrainOptions))


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


def n_weights(problem: Problem, widths) -> int:
    """The number of weights of a network of ``widths`` (an int: every hidden layer): w_1, the W's
    and v, biases not counted."""
    widths = _widths(widths, problem.model.L)
    m = problem.model
    return widths[0] * m.input_dim + sum(a * b for a, b in zip(widths, widths[1:])) + widths[-1] * m.outputs


def _check_network_size(problem: Problem, widths, t_end, lr, batch) -> None:
    """Refuse networks, step counts and batches too large to hold or run, before allocating anything."""
    from mfpde.checks import MAX_DATA, MAX_STATE, MAX_TIME_STEPS

    m = problem.model
    n_state = n_weights(problem, widths)
    if n_state > MAX_STATE:
        raise ConfigError("sgd.widths", f"a network of widths {list(widths)} has {n_state:.3g} weights "
                          f"(> {MAX_STATE:.0e}); use smaller widths")
    t_end = checks.number(t_end, "solver.t_end", positive=True)
    if t_end / lr > MAX_TIME_STEPS:
        raise ConfigError("sgd.lr", f"t_end/lr = {t_end / lr:.3g} steps is more than {MAX_TIME_STEPS:.0e}")
    if batch * (m.input_dim + m.outputs) > MAX_DATA:
        raise ConfigError("sgd.batch", f"a batch of {batch} points in dimension {m.input_dim} + {m.outputs} "
                          f"is more than {MAX_DATA:.0e} numbers")


def _checkpoint_fingerprint(problem: Problem, ss, widths, replica, opts: TrainOptions, batches: _Batches, rec_steps,
                            keep, fixed: dict) -> str:
    """Hash of everything that determines a run's trajectory (a checkpoint only resumes its own run)."""
    from mfpde.checks import to_toml

    h = hashlib.sha256((to_toml(problem.config) if problem.config else repr(problem.name)).encode())
    settings = {"entropy": str(ss.entropy), "spawn_key": [int(k) for k in ss.spawn_key],
                "widths": list(widths), "replica": int(replica), "mode": opts.mode, "batch": int(batches.B),
                "lr": repr(float(opts.lr)), "record_steps": [int(k) for k in rec_steps],
                "statistics": bool(opts.statistics), "bound": repr(float(opts.bound)), "keep": bool(keep),
                "chunk_max": int(batches.chunk_max)}
    if fixed:
        settings["fixed_nodes"] = fixed
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def _fixed_digest(net: Problem, fixed_nodes) -> dict:
    """{layer: SHA-256 of its fixed features} for the fingerprint ({} without fixed_nodes)."""
    return {str(l): hashlib.sha256(np.ascontiguousarray(net.embedding.rules[l - 1].nodes).tobytes()).hexdigest()
            for l in sorted(fixed_nodes or {})}

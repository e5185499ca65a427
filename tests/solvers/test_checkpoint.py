"""Checkpoints: a solve killed with SIGKILL and resumed gives the uninterrupted result, bit for bit."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mfpde.store import netcdf as io
from mfpde.errors import ConfigError
from mfpde.solvers import integrate, make
from mfpde.solvers.checkpoint import load
from mfpde.problem import config
from mfpde.system.system import System

CONFIG = """
name = "ck"
[model]
input_dim = 1
hidden = ["tanh", "tanh"]
[schedules]
weights = { kind = "power", xi0 = 2.0, tau = 0.5, p = 1.0 }
[rules]
default = { kind = "gaussian_trapezoid", size = 48 }
[init]
W_2 = 0.5
[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 2.0 }
rule = { kind = "gaussian_trapezoid", size = 48 }
[probes]
kind = "grid"
low = -2.0
high = 2.0
size = 5
[solver]
stepper = "STEPPER"
dt = 0.002
t_end = 40.0
save_every = 0.5
"""


@pytest.mark.parametrize("stepper", ["rk4", "dopri5"])
def test_in_process_resume_is_bit_for_bit(tmp_path, stepper):
    c = config.loads(CONFIG.replace("STEPPER", stepper).replace("t_end = 40.0", "t_end = 2.0"))
    s = System(c.problem)
    full = integrate(s, make(stepper, s, **c.solver.stepper_options()), 2.0, save_every=0.5, checkpoint=tmp_path / "a.h5")
    # a run stopped after t = 1 (its last checkpoint), then resumed to t = 2
    part = tmp_path / "b.h5"
    with pytest.raises(_Stop):
        integrate(s, make(stepper, s, **c.solver.stepper_options()), 2.0, save_every=0.5, checkpoint=part,
                  trackers=[_Raise(1.0)])
    assert load(part)["t"] == 1.0
    resumed = integrate(s, make(stepper, s, **c.solver.stepper_options()), 2.0, save_every=0.5,
                        checkpoint=part, resume=True)
    assert resumed.times == full.times
    for k in full.observables:
        np.testing.assert_array_equal(resumed.observable(k), full.observable(k))
    np.testing.assert_array_equal(np.stack(resumed.states), np.stack(full.states))
    assert resumed.stats["steps"] == full.stats["steps"]


class _Stop(Exception):
    pass


class _Raise:
    """Tracker that interrupts the run right after the save at time ``t`` (checkpoint written)."""

    def __init__(self, t):
        self.t = t

    def start(self, *a): ...
    def progress(self, *a): ...
    def finish(self): ...

    def handle(self, t, y, sol):
        if t > self.t - 1e-12:
            raise _Stop()


@pytest.mark.parametrize("stepper, options", [("sdirk4", {"rtol": 1e-5}), ("sdirk4", {"rtol": 1e-5, "linear_solver": "gmres"}),
                                             ("backward_euler", {"dt": 0.05, "jacobian": "fd"})])
def test_implicit_steppers_resume_bit_for_bit_from_their_state(tmp_path, stepper, options):
    """The Jacobian, LU, linearization, η and step proposal of an implicit stepper go through Stepper.state()."""
    c = config.loads(CONFIG.replace("STEPPER", stepper).replace("size = 48", "size = 12"))
    s = System(c.problem)
    full = integrate(s, make(stepper, s, **options), 2.0, save_every=0.5, checkpoint=tmp_path / "a.h5")
    part = tmp_path / "b.h5"
    with pytest.raises(_Stop):
        integrate(s, make(stepper, s, **options), 2.0, save_every=0.5, checkpoint=part, trackers=[_Raise(1.0)])
    resumed = integrate(s, make(stepper, s, **options), 2.0, save_every=0.5, checkpoint=part, resume=True)
    np.testing.assert_array_equal(np.stack(resumed.states), np.stack(full.states))
    assert resumed.stats == {**full.stats, "wall_seconds": resumed.stats["wall_seconds"]}


def test_resume_refuses_another_problem(tmp_path):
    c = config.loads(CONFIG.replace("STEPPER", "rk4").replace("t_end = 40.0", "t_end = 1.0"))
    s = System(c.problem)
    integrate(s, make("rk4", s, dt=0.002), 1.0, save_every=0.5, checkpoint=tmp_path / "c.h5")
    with pytest.raises(ConfigError, match="another problem"):
        integrate(s, make("rk4", s, dt=0.004), 1.0, save_every=0.5, checkpoint=tmp_path / "c.h5", resume=True)


def test_sigkill_then_resume_gives_the_uninterrupted_file(tmp_path):
    cfg = tmp_path / "ck.toml"
    cfg.write_text(CONFIG.replace("STEPPER", "rk4"))
    exe = [sys.executable, "-m", "mfpde.cli"]
    ref = tmp_path / "ref.nc"
    subprocess.run(exe + ["solve", str(cfg), "-o", str(ref), "-q"], check=True, timeout=600)
    ck = tmp_path / "run.ck.h5"
    out = tmp_path / "run.nc"
    proc = subprocess.Popen(exe + ["solve", str(cfg), "-o", str(out), "-q", "--checkpoint", str(ck)])
    deadline = time.time() + 300
    while time.time() < deadline:   # kill once a few save times are checkpointed
        if ck.exists():
            try:
                if load(ck)["t"] >= 2.0:
                    break
            except Exception:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the solve finished before it could be killed; make it longer"
    assert not out.exists()
    # a kill during a checkpoint write leaves its temporary file (named with the writer's pid);
    # plant the one the killed process would have left, so the cleanup is always tested
    from mfpde.store import atomic

    (tmp_path / atomic.temp_path(ck).name.replace(f".{os.getpid()}.", f".{proc.pid}.")).write_bytes(b"partial")
    subprocess.run(exe + ["solve", str(cfg), "-o", str(out), "-q", "--checkpoint", str(ck), "--resume"], check=True, timeout=600)
    a, b = io.read(ref), io.read(out)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    np.testing.assert_array_equal(a["time"].values, b["time"].values)
    assert [p for p in Path(tmp_path).iterdir() if p.name.endswith(".tmp")] == []

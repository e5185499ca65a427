"""SGD checkpoints: a finite-width run resumed from any checkpoint, or an `mfpde sgd` ensemble
killed with SIGKILL and resumed, gives the uninterrupted result bit for bit."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mfpde import finite

from mfpde.problem import config

from mfpde.store import runs
from mfpde.problem.data import make_law
from mfpde.finite.ensemble import run_ensemble
from mfpde.errors import ConfigError, StoreError

CONFIG = """
name = "sgd_ck"
[model]
input_dim = 1
hidden = ["tanh", "tanh"]
[rules]
default = { kind = "gaussian_trapezoid", size = 16 }
[init]
W_2 = { kind = "constant", value = 0.5, noise_std = 1.0 }
[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 2.0 }
TRAIN
[probes]
kind = "grid"
low = -2.0
high = 2.0
size = 5
[solver]
dt = 0.01
t_end = T_END
save_every = 0.1
[sgd]
mode = "MODE"
batch = 4
widths = [WIDTHS]
replicas = 2
"""


def make_config(mode, t_end=1.0, widths="8, 16"):
    train = "sample = 64" if mode == "minibatch" else 'rule = { kind = "gaussian_trapezoid", size = 24 }'
    return CONFIG.replace("TRAIN", train).replace("MODE", mode).replace("T_END", str(t_end)).replace("WIDTHS", widths)


def _train(c, mode, **kw):
    law = make_law(c.raw["data"]["train"], "data.train") if mode == "online" else None
    from mfpde.finite.ensemble import record_times

    return finite.train(c.problem, 8, mode=mode, batch=4, lr=0.01, t_end=c.solver.t_end,
                        record_times=record_times(c), replica=1, law=law, **kw)


def _same_run(a, b):
    assert a.times == b.times
    assert sorted(a.observables) == sorted(b.observables)
    for k in a.observables:
        assert np.array_equal(np.asarray(a.observables[k]), np.asarray(b.observables[k])), k
    assert a.stats["steps"] == b.stats["steps"]
    assert a.status == b.status


@pytest.mark.parametrize("mode", ["full", "online", "minibatch"])
def test_run_resumed_from_any_checkpoint_is_bit_for_bit(tmp_path, monkeypatch, mode):
    c = config.loads(make_config(mode))
    plain = _train(c, mode, snapshots=True)
    # keep a copy of every checkpoint the run writes
    copies = []
    real = runs.write_checkpoint

    def spy(path, attrs, arrays):
        real(path, attrs, arrays)
        copies.append(tmp_path / f"copy{len(copies)}.h5")
        shutil.copy(path, copies[-1])

    monkeypatch.setattr(runs, "write_checkpoint", spy)
    ck = tmp_path / "run.ck.h5"
    with_ck = _train(c, mode, snapshots=True, checkpoint=ck, checkpoint_every=7)
    _same_run(plain, with_ck)   # checkpointing does not change the run
    steps = [runs.load_checkpoint(p)[0]["step"] for p in copies]
    assert len(copies) >= 5 and steps == sorted(steps) and steps[0] >= 7
    assert all(b - a >= 7 for a, b in zip(steps, steps[1:]))
    for i in np.random.default_rng(0).choice(len(copies), 3, replace=False):
        resumed = _train(c, mode, snapshots=True, checkpoint=copies[i], resume=True)
        _same_run(plain, resumed)
        assert np.array_equal(np.stack(plain.states), np.stack(resumed.states))


def test_minibatch_checkpoint_holds_the_permutation_and_position(tmp_path):
    c = config.loads(make_config("minibatch", t_end=0.23))
    ck = tmp_path / "mb.h5"
    _train(c, "minibatch", checkpoint=ck, checkpoint_every=1)
    a, arr = runs.load_checkpoint(ck)
    assert a["step"] == 23
    assert sorted(arr["perm"].tolist()) == list(range(64))   # a permutation of the training set
    assert a["pos"] == (23 * 4) % 64 or a["pos"] == 64 and (23 * 4) % 64 == 0
    assert "PCG64" in a["rng"]


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    c = config.loads(make_config("full", t_end=0.3))
    ck = tmp_path / "a.h5"
    _train(c, "full", checkpoint=ck, checkpoint_every=5)
    with pytest.raises(ConfigError, match="another run") as exc:
        finite.train(c.problem, 8, mode="full", lr=0.02, t_end=0.3, replica=1, checkpoint=ck, resume=True)
    assert exc.value.key == "--resume"


def test_damaged_checkpoint_is_a_store_error_naming_the_file(tmp_path):
    c = config.loads(make_config("full", t_end=0.3))
    ck = tmp_path / "a.h5"
    _train(c, "full", checkpoint=ck, checkpoint_every=5)
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="a.h5"):
        _train(c, "full", checkpoint=ck, resume=True)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_checkpoint_every_is_a_config_error(tmp_path, bad):
    c = config.loads(make_config("full", t_end=0.1))
    with pytest.raises(ConfigError) as exc:
        run_ensemble(c, tmp_path / "r.h5", widths=(8,), replicas=1, checkpoint_every=bad, say=lambda *a: None)
    assert exc.value.key == "--checkpoint-every"


def test_unstable_sgd_run_is_stored_as_blow_up_with_its_records(tmp_path):
    text = make_config("full", t_end=20.0).replace("save_every = 0.1", "save_every = 1.0")
    c = config.loads(text.replace("[solver]", "[schedules]\nweights = 1e4\n[solver]"))   # a huge rate
    out = tmp_path / "blow.h5"
    msgs = []
    with np.errstate(all="ignore"):
        run_ensemble(c, out, widths=(8,), replicas=1, lr=0.1, say=msgs.append)
    assert any("reduce the learning rate" in m and "step" in m for m in msgs)
    ds = runs.read(out)
    assert str(ds["status"].values[0, 0]) == "blow-up"
    loss = ds["loss_train"].values[0, 0]
    t = ds["time"].values
    assert 0 < t[-1] < 20.0 and np.all(np.isfinite(loss)) and loss[-1] > 1e3 * loss[0]   # last good state kept
    with h5py.File(out) as f:
        assert "non-finite" in f["runs/w8_r0"].attrs["message"] or "bound" in f["runs/w8_r0"].attrs["message"]


# --------------------------------------------------------------------------- SIGKILL, then resume

def _h5_arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = {name: dict(f["runs"][name].attrs) for name in f["runs"]}
    return out, attrs


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "online"])
def test_sgd_killed_with_sigkill_then_resumed_gives_the_uninterrupted_store(tmp_path, mode):
    cfg = tmp_path / "sgd.toml"
    cfg.write_text(make_config(mode, t_end=40.0, widths="16, 24"))
    exe = [sys.executable, "-m", "mfpde.cli", "sgd", str(cfg), "-q"]
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    ref = tmp_path / "ref.h5"
    subprocess.run(exe + ["-o", str(ref)], check=True, timeout=300, env=env)
    out = tmp_path / "run.h5"
    ck_dir = runs.checkpoint_dir(out)
    proc = subprocess.Popen(exe + ["-o", str(out), "--checkpoint-every", "50"], env=env)
    rng = np.random.default_rng(int.from_bytes(mode.encode(), "little"))
    delay = rng.uniform(0.0, 0.6)   # a random moment after the first checkpoint (the ensemble trains ~3 s)
    deadline = time.time() + 300
    seen = None
    while time.time() < deadline and proc.poll() is None:
        if seen is None and ck_dir.is_dir() and any(ck_dir.glob("*.h5")):
            seen = time.time()
        if seen is not None and time.time() - seen >= delay:
            break
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the ensemble finished before it could be killed; make it longer"
    assert any(ck_dir.glob("*.h5"))
    # without --resume the CLI refuses to throw the checkpoints away
    r = subprocess.run(exe + ["-o", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--resume" in r.stderr
    subprocess.run(exe + ["-o", str(out), "--checkpoint-every", "50", "--resume"], check=True, timeout=300, env=env)
    a, a_attrs = _h5_arrays(ref)
    b, b_attrs = _h5_arrays(out)
    assert sorted(a) == sorted(b) and len(a) > 20
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    for run in a_attrs:
        for k in ("status", "seed", "stats_steps", "width", "replica"):
            assert a_attrs[run][k] == b_attrs[run][k]
    assert not ck_dir.exists()

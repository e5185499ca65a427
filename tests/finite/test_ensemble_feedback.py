"""`mfpde sgd` says what it will do before training and reports within a run (issue 18, 1).

Before training: the runs, the SGD steps, the weights per network and an estimated wall time
from a short timed probe.  ``finite.train`` calls its ``progress`` hook after every record;
on a terminal the ensemble shows a bar per run and one per record time within the run, off a
terminal one line per finished run.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from mfpde import finite
from mfpde.cli import main
from mfpde.finite.ensemble import run_ensemble
from mfpde.finite.sgd import n_weights
from mfpde.problem import config
from tiny import tiny_toml

TINY = tiny_toml("feedback", probes=None)   # tests/tiny.py


@pytest.fixture
def c():
    return config.loads(TINY)


def test_train_calls_progress_after_every_record(c):
    calls = []
    run = finite.train(c.problem, 4, lr=0.05, t_end=0.5, record_times=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
                       statistics=False, progress=lambda *a: calls.append(a))
    assert [(d, tot) for d, tot, _ in calls] == [(k, 6) for k in range(1, 7)]
    assert np.allclose([t for *_, t in calls], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], rtol=0, atol=1e-12)
    assert np.allclose(run.times, [t for *_, t in calls], rtol=0, atol=0)
    assert finite.train(c.problem, 4, lr=0.05, t_end=0.1, statistics=False, progress=True).status == "completed"


def test_weights_per_network_is_the_state_size_of_a_bias_free_network(c):
    run = finite.train(c.problem, (3, 5), lr=0.05, t_end=0.05, statistics=False, snapshots=True)
    assert n_weights(c.problem, (3, 5)) == run.states[0].size
    assert n_weights(c.problem, 4) == finite.train(c.problem, 4, lr=0.05, t_end=0.05, statistics=False,
                                                   snapshots=True).states[0].size


def test_ensemble_says_runs_steps_weights_and_a_positive_estimate_then_a_line_per_run(c, tmp_path):
    lines = []
    run_ensemble(c, tmp_path / "runs.h5", widths=(4, 8), replicas=2, say=lines.append, progress=False)
    text = "\n".join(lines)
    assert "4 runs to train (2 widths × 2 replicas) × 10 SGD steps = 40 steps" in text, text
    # L = 2, input_dim = outputs = 1: n + n² + n weights
    assert "weights per network: width 4: 24, width 8: 80" in text, text
    est = [ln for ln in lines if ln.startswith("mfpde: estimated wall time ")]
    assert len(est) == 1 and "an estimate" in est[0], text
    secs = float(re.match(r"mfpde: estimated wall time (\S+) s", est[0]).group(1))
    assert 0 < secs < 3600
    per_run = [ln for ln in lines if re.match(r"mfpde: run \d/4: width \d replica \d: completed, final loss_train "
                                              r"\S+ after 10 steps, \S+ s$", ln)]
    assert len(per_run) == 4, text
    assert lines.index(est[0]) < lines.index(per_run[0])


def test_no_estimate_when_asked_for_none_or_nothing_is_left_to_train(c, tmp_path):
    lines = []
    run_ensemble(c, tmp_path / "runs.h5", widths=(4,), replicas=1, say=lines.append, progress=False, estimate=False)
    assert not any("estimated" in ln for ln in lines)
    lines.clear()
    run_ensemble(c, tmp_path / "runs.h5", widths=(4,), replicas=1, say=lines.append, progress=False)   # resumed
    assert "0 runs to train" in "\n".join(lines) and not any("estimated" in ln for ln in lines)


def test_terminal_bar_advances_within_a_run_per_record(c, tmp_path, monkeypatch, capsys):
    calls = []
    real = finite.train

    def counting(*a, progress=None, **kw):
        if progress is None:          # the estimate's probe
            return real(*a, **kw)
        return real(*a, progress=lambda *p: (calls.append(p), progress(*p)), **kw)

    monkeypatch.setattr(finite, "train", counting)
    run_ensemble(c, tmp_path / "runs.h5", widths=(4, 8), replicas=2, say=lambda *a: None, progress=True)
    assert len(calls) == 4 * 6                         # 4 runs × record times 0, 0.1, …, 0.5
    err = capsys.readouterr().err
    assert "sgd runs" in err and "width 8 replica 1" in err and "record" in err


def test_cli_quiet_probes_nothing_and_prints_nothing(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.toml").write_text(TINY)
    from mfpde.finite import ensemble

    monkeypatch.setattr(ensemble, "estimate_seconds", lambda *a, **k: pytest.fail("probed under -q"))
    assert main(["sgd", str(tmp_path / "tiny.toml"), "-o", str(tmp_path / "r.h5"), "--widths", "4", "--replicas",
                 "1", "-q"]) == 0
    assert capsys.readouterr().out == ""


def test_estimate_scales_the_probe_by_weights_and_steps(c, monkeypatch):
    from mfpde.finite import ensemble

    import time
    import types

    ticks = iter(np.arange(0.0, 100.0, 1.0))            # every perf_counter call of the ensemble: one more second
    monkeypatch.setattr(ensemble, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks)),
                                                                monotonic=time.monotonic))
    opts = finite.TrainOptions(lr=0.05, t_end=0.5, statistics=False)
    secs, k, big = ensemble.estimate_seconds(c.problem, opts, [4, 8, 8])
    # the probe's 10 steps of width 8 took 1 s: 0.1 s a step, 10 steps a run, runs of 24 + 80 + 80 weights
    assert (k, big) == (10, 8)
    assert secs == pytest.approx(0.1 * 10 * (24 + 80 + 80) / 80, rel=1e-12)

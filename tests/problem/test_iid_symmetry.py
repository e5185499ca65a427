"""The m_2 invariance at L = 2: odd activations and symmetric first- and last-layer laws make the
middle-weight mean m_2 drop out of the limit (u ↦ −u in each layer maps the solution to itself), and
the configuration says so in its notes.  Both directions: the warning is there exactly when the
outputs do not move with m_2."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import mfpde

BASE = {
    "name": "sym",
    "model": {"input_dim": 1, "hidden": ["tanh", "tanh"], "loss": "squared"},
    "iid": {"rule": {"kind": "gaussian_trapezoid", "size": 12},
            "w_1": {"law": "normal", "mean": 0.0, "std": 1.0},
            "v": {"law": "normal", "mean": 0.0, "std": 1.0},
            "W": [{"mean": 0.7, "std": 1.0}]},
    "data": {"train": {"kind": "teacher", "d": 1, "rule": {"kind": "gaussian_trapezoid", "size": 12},
                       "teacher": {"kind": "single_index_tanh", "direction": [1.0], "scale": 2.0}}},
    "probes": {"kind": "grid", "low": -2.0, "high": 2.0, "size": 5},
    "solver": {"stepper": "rk4", "dt": 0.05, "t_end": 2.0, "save_every": 1.0},
}


def _note(c) -> bool:
    return any("m_2" in n and "no effect" in n for n in c.notes)


def _outputs(sets: dict, m2: float) -> tuple[np.ndarray, np.ndarray, bool]:
    c = mfpde.load(copy.deepcopy(BASE), set={**sets, "iid.W[0].mean": m2})
    ds = mfpde.solve(c, progress=False).to_xarray()
    return ds["loss_train"].values, ds["yhat_probe"].values, _note(c)


SYMMETRIC = {   # each keeps both symmetries u_1 ↦ −u_1, u_2 ↦ −u_2
    "tanh": {},
    "erf-identity": {"model.hidden": ["erf", "identity"]},
    "uniform w_1": {"iid.w_1": {"law": "uniform", "low": -1.5, "high": 1.5}},
    "random symmetric biases": {"model.biases": [True, True],
                                "iid.b": [{"law": "normal", "mean": 0.0, "std": 0.5}, {"law": "uniform", "low": -1.0, "high": 1.0}]},
}
BROKEN = {   # each breaks one of them, and m_2 then moves the outputs
    "relu at layer 2": {"model.hidden": ["tanh", "relu"]},
    "relu at layer 1": {"model.hidden": ["relu", "tanh"]},
    "w_1 with a mean": {"iid.w_1.mean": 0.3},
    "v with a mean": {"iid.v.mean": 0.3},
    "a constant bias": {"model.biases": [True, False], "iid.b": [0.5, 0.0]},
}


@pytest.mark.parametrize("name", SYMMETRIC)
def test_m2_has_no_effect_and_the_config_warns(name):
    loss0, y0, warned0 = _outputs(SYMMETRIC[name], 0.0)
    loss1, y1, warned1 = _outputs(SYMMETRIC[name], 0.7)
    assert warned1 and not warned0            # m_2 = 0: nothing to warn about
    assert np.ptp(loss1) > 1e-3               # the limit moves: the invariance is not a frozen system
    np.testing.assert_allclose(loss1, loss0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_symmetry_lets_m2_act_and_does_not_warn(name):
    loss0, _, _ = _outputs(BROKEN[name], 0.0)
    loss1, _, warned = _outputs(BROKEN[name], 0.7)
    assert not warned
    assert np.max(np.abs(loss1 - loss0)) > 1e-4


def test_no_warning_for_three_layers_or_a_nonlinear_edge():
    three = mfpde.load(copy.deepcopy(BASE), set={"model.hidden": ["tanh", "tanh", "tanh"],
                                                   "iid.W": [{"mean": 0.7, "std": 1.0}, {"mean": 0.7, "std": 1.0}]})
    assert not _note(three)
    assert _note(mfpde.load(copy.deepcopy(BASE)))

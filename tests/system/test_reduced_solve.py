"""SPEC §7's checks of the reduced limit through the whole solver (mfpde.solve):

* at d = 2, k = 1 the reduced solve (forced: ζ = ±1, β⁰ ~ σχ_1, r ~ χ_1) and the general solver on
  tensor rules of R^2 solve the same limit: their difference shrinks as both are refined, and stays
  within the sum of their own error estimates (the estimate's honesty is validated in
  docs/accuracy.md; here it only bounds a difference both sides see);
* the result does not depend on the rule sizes beyond the stated estimate (d = 40);
* a reduced solve is written with its reduction attributes and its probes as points of R^d.
(The RHS against the hand-derived numpy oracle and finite differences: tests/system/test_reduced_kernels.py
and test_reduced_reference.py; networks in d dimensions against the limit: tests/test_high_dimension.py.)"""
from __future__ import annotations

import numpy as np
import pytest

import mfpde


def _cfg(n: int, reduced: bool, d: int = 2) -> dict:
    t = {"kind": "gaussian_trapezoid", "size": n, "map": "sinh"}
    raw = {"model": {"input_dim": d, "hidden": ["tanh", "tanh"], "biases": [True, False]},
           "iid": {"rule": t, "reduction": "isotropic_gaussian" if reduced else "none",
                   "b": [{"law": "normal", "std": 0.5}, 0.0]},
           "data": {"train": {"kind": "teacher", "d": d, "teacher": {"kind": "single_index_tanh", "scale": 2.0},
                              "rule": t if reduced else {**t, "dim": d}}},
           "probes": [[0.5, 0.3] + [0.0] * (d - 2), [-1.0, 2.0] + [0.0] * (d - 2)],
           "solver": {"stepper": "rk4", "dt": 0.1, "t_end": 3.0, "save_every": 0.5}}
    if reduced:
        raw["iid"]["radius_rule"] = {"kind": "chi", "size": n}
        raw["data"]["train"]["radius_rule"] = {"kind": "chi", "size": n}
    return raw


def _sup(a, b, name="loss_train") -> float:
    return float(np.max(np.abs(np.asarray(a.observable(name)) - np.asarray(b.observable(name)))))


def test_d2_reduced_equals_general_solver_to_quadrature_accuracy():
    diffs = []
    for n in (8, 14):
        gen = mfpde.solve(_cfg(n, False), progress=False)
        red = mfpde.solve(_cfg(n, True), progress=False)
        assert red.system.problem.reduction is not None and gen.system.problem.reduction is None
        diff = _sup(gen, red)
        bound = float(np.max(gen.estimate.loss)) + float(np.max(red.estimate.loss))
        assert diff <= bound, (n, diff, bound)
        assert _sup(gen, red, "yhat_probe") <= float(np.max(gen.estimate.yhat)) + float(np.max(red.estimate.yhat))
        diffs.append(diff)
    # both rules converge (measured 1e-3 → 6e-5 → 3e-7 for n = 6, 10, 16): refining must shrink the gap
    assert diffs[1] < diffs[0] / 10, diffs


def test_reduced_solve_is_rule_independent_beyond_its_estimate(tmp_path):
    sol = mfpde.solve(_cfg(10, True, d=40), progress=False)
    fine = mfpde.solve(_cfg(16, True, d=40), progress=False, estimate=False)
    est = float(np.max(sol.estimate.loss))
    assert sol.estimate.status == "ok" and est > 0
    assert _sup(sol, fine) <= 3 * est, (_sup(sol, fine), est)
    # the file says what was solved; probes stay points of R^40
    from mfpde.store import netcdf

    path = netcdf.write(sol.to_xarray(), tmp_path / "r.nc")
    ds = netcdf.read(path)
    assert ds.attrs["reduction"] == "isotropic_gaussian" and int(ds.attrs["reduced_d"]) == 40
    assert int(ds.attrs["reduced_k"]) == 1
    assert ds["probe_x"].shape == (2, 40)
    assert ds["w_1"].dims == ("time", "node_1", "reduced_input")

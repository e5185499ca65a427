"""Seed settings as presets: correlated embeddings do not collapse, frozen ends stay frozen."""
from pathlib import Path

import numpy as np

from mfpde.problem import config
from mfpde.solvers import integrate, make
from mfpde.system.system import System, reference_forward

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def solve(name, t_end=2.0):
    c = config.load(EXAMPLES / f"{name}.toml")
    s = System(c.problem)
    sol = integrate(s, make("rk4", s, dt=0.02), t_end, save_every=t_end / 2)
    return c, s, sol


def test_correlated_three_layer_embedding_does_not_collapse():
    """h_2 genuinely varies over the middle layer's nodes, and the loss decreases (SPEC §4)."""
    c, s, sol = solve("three_layer_correlated")
    for y in sol.states:
        Hs, _, _ = reference_forward(s, y, c.problem.probes)
        h2 = Hs[1]                                   # [probes, Q_2]
        spread = np.sqrt(np.sum(s.weights[1] * (h2 - h2 @ s.weights[1][:, None]) ** 2, axis=1))
        assert np.median(spread) > 0.05, spread     # O(1), not O(n^{-1/2}) (x = 0 gives h = 0: odd φ, no bias)
    loss = sol.observable("loss_train")
    assert loss[-1] < 0.9 * loss[0]


def test_frozen_ends_keep_input_and_output_features_fixed():
    c, s, sol = solve("aoy_frozen_ends")
    first, last = s.views(sol.states[0]), s.views(sol.states[-1])
    np.testing.assert_array_equal(first["w_1"], last["w_1"])
    np.testing.assert_array_equal(first["v"], last["v"])
    assert np.max(np.abs(first["W_2"] - last["W_2"])) > 1e-3
    assert np.max(np.abs(first["W_3"] - last["W_3"])) > 1e-3
    loss = sol.observable("loss_train")
    assert loss[-1] < loss[0]


def test_every_preset_validates():
    for path in sorted(EXAMPLES.glob("*.toml")):
        if path.name.startswith("sweep"):
            continue
        c = config.load(path)
        assert np.all(np.isfinite(System(c.problem).y0)), path.name

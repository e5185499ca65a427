"""The i.i.d. reduction (SPEC §4) against brute-force finite networks of the same laws."""
import numpy as np
import pytest

from mfpde.problem import config
from mfpde.errors import ConfigError
from mfpde.finite.sgd import train
from mfpde.solvers import integrate, make
from mfpde.system.system import System

BASE = """
name = "iid"
[model]
input_dim = 1
hidden = HIDDEN
[iid]
rule = { kind = "gaussian_trapezoid", size = 48 }
w_1 = { law = "normal", mean = 0.5, std = 1.0 }
W = MIDDLE
v = { law = "normal", mean = 0.3, std = 1.0 }
[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 2.0 }
rule = { kind = "gaussian_trapezoid", size = 48 }
[probes]
kind = "grid"
low = -3.0
high = 3.0
size = 13
[solver]
stepper = "euler"
dt = 0.05
t_end = 1.0
save_every = 0.5
"""
DEPTHS = {
    1: ('["sigmoid"]', "[]"),
    2: ('["sigmoid", "tanh"]', "[{ mean = 0.5, std = 1.0 }]"),
    3: ('["sigmoid", "tanh", "tanh"]', "[{ mean = 0.5, std = 1.0 }, { mean = 0.5, std = 1.0 }]"),
}


def iid_config(L, **repl):
    text = BASE.replace("HIDDEN", DEPTHS[L][0]).replace("MIDDLE", DEPTHS[L][1])
    for a, b in repl.items():
        text = text.replace(a, b)
    return config.loads(text)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_reduced_limit_matches_brute_force_networks_of_the_same_laws(L):
    """Finite networks sampled from the i.i.d. laws (middle noise included) approach the reduced limit.

    The replica mean at width n is lim + b/n + O(n^{-2}) + noise (a smooth functional of the
    empirical measure), so the Richardson combination 2·mean_{2n} − mean_n removes the 1/n
    bias; it must agree with the reduced limit within 4 standard errors (loss and ŷ at every
    saved time).
    """
    c = iid_config(L)
    s = System(c.problem)
    sol = integrate(s, make("euler", s, dt=0.05), 1.0, save_every=0.5)
    lim = {"loss_train": sol.observable("loss_train"), "yhat_probe": sol.observable("yhat_probe")[:, 6, 0]}
    R = 8
    stats = {}
    for n in (400, 800):
        runs = [train(c.problem, n, lr=0.05, t_end=1.0, record_times=[0.0, 0.5, 1.0], replica=r, statistics=False) for r in range(R)]
        for key in lim:
            vals = np.array([r.array(key) if key == "loss_train" else r.array(key)[:, 6, 0] for r in runs])
            stats[(key, n)] = (vals.mean(0), vals.std(0, ddof=1) / np.sqrt(R))
    for key in lim:
        (m1, s1), (m2, s2) = stats[(key, 400)], stats[(key, 800)]
        extrap = 2 * m2 - m1
        se = np.sqrt(4 * s2**2 + s1**2)
        assert np.all(np.abs(extrap - lim[key]) <= 4 * se), (key, extrap, lim[key], se)


def test_reduced_index_spaces_follow_spec_section_4():
    c1, c2, c3 = (iid_config(L) for L in (1, 2, 3))
    assert [r.dim for r in c1.problem.embedding.rules] == [2]              # (w_1^0, v^0)
    assert [r.size for r in c2.problem.embedding.rules] == [48, 48]        # u_1 = w_1^0, u_3 = v^0
    assert [r.size for r in c3.problem.embedding.rules] == [48, 1, 48]     # middle layer collapsed
    y0 = System(c2.problem).views(System(c2.problem).y0)
    assert np.all(y0["W_2"] == 0.5)                                        # W̄_2 starts at m_2
    assert c3.notes and "degeneracy" in c3.notes[0] and not c2.notes


def test_hidden_biases_give_middle_layers_an_index():
    c = iid_config(3, **{'hidden = ["sigmoid", "tanh", "tanh"]': 'hidden = ["sigmoid", "tanh", "tanh"]\nbiases = [false, true, false]',
                         'W = [': 'b = [0, { law = "normal", std = 0.5 }, 0]\nW = ['})
    assert [r.size for r in c.problem.embedding.rules] == [48, 48, 48] and not c.notes
    s = System(c.problem)
    b2 = s.views(s.y0)["b_2"]
    assert np.isclose(np.sum(s.weights[1] * b2**2), 0.25)                  # E[b_2^2] = std^2


def test_collapsed_three_layer_limit_has_node_independent_features():
    """L = 3 i.i.d.: h_2 and δ_2 are the same for every neuron — one node carries them."""
    c = iid_config(3)
    s = System(c.problem)
    assert s.layout.sizes[1] == 1 and s.weights[1][0] == 1.0


def test_zero_mean_middle_weights_freeze_the_three_layer_limit():
    c = iid_config(3, **{"mean = 0.5, std = 1.0 }, { mean = 0.5": "mean = 0.0, std = 1.0 }, { mean = 0.0",
                         'hidden = ["sigmoid", "tanh", "tanh"]': 'hidden = ["sigmoid", "tanh", "tanh"]'})
    assert any("never moves" in n for n in c.notes)
    s = System(c.problem)
    sol = integrate(s, make("rk4", s, dt=0.05), 2.0, save_every=0.5)
    yhat = sol.observable("yhat_probe")
    assert np.max(np.abs(yhat - yhat[0])) <= 1e-14


def test_widths_shrink_the_collapse_statistics():
    """Networks of growing width show the degeneracy (SPEC §4).

    The spread of h_2 across neurons is the middle-noise average (1/n) Σ_k ξ_kj φ(h_1(x, k)),
    of size n^{-1/2}.  The last hidden layer's deviation from rank one is smaller: with
    η_i(x) = h_2(x, i) − h̄_2(x) = O(n^{-1/2}), h_3(x, j) = f(x) g(j) + (1/n) Σ_i ξ_ij φ'(h̄_2(x)) η_i(x)
    + O(1/n), and the middle sum has entries of size n^{-1} (n terms of size n^{-1/2}/n with
    random signs), so σ_2/σ_1 falls like n^{-1} — faster than SPEC §4's "like n^{-1/2}", which
    it implies.  Measured rates: spread ≈ 0.46, σ_2/σ_1 ≈ 0.95.
    """
    c = iid_config(3)
    widths = [64, 256, 1024]
    spread, ratio = [], []
    for n in widths:
        runs = [train(c.problem, n, lr=0.05, t_end=0.5, record_times=[0.0, 0.5], replica=r, statistics=True) for r in range(4)]
        spread.append(np.mean([r.array("h_spread_2")[-1] for r in runs]))
        sv = np.array([r.array("singular_values_3")[-1] for r in runs])
        ratio.append(np.mean(sv[:, 1] / sv[:, 0]))
    rate_spread = -np.polyfit(np.log(widths), np.log(spread), 1)[0]
    rate_ratio = -np.polyfit(np.log(widths), np.log(ratio), 1)[0]
    assert 0.35 <= rate_spread <= 0.65, (spread, rate_spread)
    assert 0.8 <= rate_ratio <= 1.2, (ratio, rate_ratio)


def test_iid_section_is_validated():
    with pytest.raises(ConfigError, match=r"iid\.W"):
        iid_config(2, **{"W = [{ mean = 0.5, std = 1.0 }]": "W = [{ mean = 0.5 }, { mean = 0.5 }]"})
    with pytest.raises(ConfigError, match=r"iid\.X"):
        iid_config(2, **{"W = [{ mean = 0.5, std = 1.0 }]": "W = [{ mean = 0.5 }]\nX = 1"})
    with pytest.raises(ConfigError, match=r"iid\.w_1\.law"):
        iid_config(2, **{'law = "normal", mean = 0.5': 'law = "cauchy", mean = 0.5'})
    with pytest.raises(ConfigError, match="rules"):
        config.loads(BASE.replace("HIDDEN", DEPTHS[2][0]).replace("MIDDLE", DEPTHS[2][1]) + '\n[rules]\ndefault = { kind = "gauss_hermite", size = 4 }\n')

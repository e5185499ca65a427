"""A large discretization is said before any work (issue 16, item 4, guards; docs/config.md).

A configuration whose limit state would have more than 10⁶ unknowns, or whose hidden layer has a
tensor-product rule over >= 2 coordinates of more than 2¹⁶ nodes, gets one warning note in
``Config.notes`` naming the size and the budget and suggesting a Sobol' rule or ``--accuracy``;
it is not refused.  The counts below are closed forms of the state layout (w_1 [Q_1, d], b_l [Q_l],
W_l [Q_{l−1}, Q_l], v [Q_L, K], b_out [K]) written out by hand, never the code's own output.
"""
from __future__ import annotations

import pytest

from mfpde.cli import main
from mfpde.problem import config

DATA_1 = ('[data.train]\nkind = "teacher"\nd = 1\nteacher = { kind = "single_index_tanh", direction = [1.0] }\n'
          'rule = { kind = "gauss_hermite", size = 4 }\n')
DATA_2_3 = ('[data.train]\nkind = "teacher"\nd = 2\nteacher = { kind = "two_layer", output_dim = 3 }\n'
            'rule = { kind = "gauss_hermite", size = 3, dim = 2 }\n')


def rules_config(rule: str, hidden=("tanh", "tanh"), extra: str = "") -> str:
    hid = ", ".join(f'"{a}"' for a in hidden)
    return f'[model]\ninput_dim = 1\nhidden = [{hid}]\n{extra}[rules]\ndefault = {rule}\n' + DATA_1


def iid_config(size: int, hidden=("tanh", "tanh"), biases: str = "[true, false]",
               b: str = 'b = [{law = "normal", std = 1.0}, 0.0]', layer_1: str = "") -> str:
    hid = ", ".join(f'"{a}"' for a in hidden)
    rules = f"[iid.rules]\nlayer_1 = {layer_1}\n" if layer_1 else ""
    return (f'[model]\ninput_dim = 2\noutputs = 3\nhidden = [{hid}]\nbiases = {biases}\n'
            f'[iid]\nrule = {{kind = "gaussian_trapezoid", size = {size}}}\n{b}\n{rules}' + DATA_2_3)


def size_notes(text: str) -> list[str]:
    return [n for n in config.loads(text).notes if n.startswith("large discretization")]


@pytest.mark.parametrize("Q, expected_note", [(999, False), (1000, True)])
def test_state_note_appears_just_above_a_million_unknowns_and_not_below(Q, expected_note):
    # L = 2, d = K = 1, no biases: Q (w_1) + Q² (W_2) + Q (v) unknowns: 999 999 at Q = 999, 1 002 000 at 1000
    n = Q + Q * Q + Q
    assert (n > 1_000_000) is expected_note
    notes = size_notes(rules_config(f'{{ kind = "gaussian_trapezoid", size = {Q} }}'))
    assert len(notes) == (1 if expected_note else 0), notes
    if expected_note:
        assert f"the state would have {n:,} unknowns (budget 1,000,000)" in notes[0], notes[0]
        assert 'kind = "sobol"' in notes[0] and "mfpde solve --accuracy TOL" in notes[0]
        assert "tensor product" not in notes[0]   # a 1-D rule is no tensor product


def test_state_size_counts_biases_output_bias_and_initial_noise_indices():
    # L = 2, d = 1, K = 1, Q = 5, biases on both layers, an output bias and a 3-node noise rule ω_2:
    # w_1 5 + b_1 5 + W_2 3·5·5 + b_2 5 + v 5 + b_out 1
    text = rules_config('{ kind = "gaussian_trapezoid", size = 5 }',
                        extra="biases = true\noutput_bias = true\n").replace(
        "default = ", 'omega_2 = { kind = "gauss_hermite", size = 3 }\ndefault = ')
    c = config.loads(text)
    m = c.problem.model
    assert config.state_size(m, [5, 5], [1, 3]) == 5 + 5 + 75 + 5 + 5 + 1
    assert config.state_size(m, [5, 5]) == 5 + 5 + 25 + 5 + 5 + 1


def test_state_size_is_the_size_of_the_state_the_solver_allocates():
    from mfpde.system.system import System

    c = config.loads(iid_config(4))   # layer 1: 4³ nodes (w_1, b_1), layer 2: 4³ (v)
    q = [r.size for r in c.problem.embedding.rules]
    assert q == [64, 64]
    expected = 64 * 2 + 64 + 64 * 64 + 64 * 3
    assert config.state_size(c.problem.model, q) == expected
    assert System(c.problem).y0.size == expected


def test_the_iid_trapezoid_of_size_12_at_d2_k3_of_issue_16_is_noted():
    # layer 1: w_1 (2) and b_1 random: 12³ = 1728 nodes; layer 2: v (3): 1728 nodes
    n = 1728 * 2 + 1728 + 1728 * 1728 + 1728 * 3
    notes = size_notes(iid_config(12))
    assert len(notes) == 1 and f"{n:,} unknowns" in notes[0], notes
    assert n == 2_996_352   # the ~3e6 of the issue
    # size 8: 512 nodes per layer, 265 216 unknowns: no note
    assert 512 * 2 + 512 + 512 * 512 + 512 * 3 < 1_000_000 and size_notes(iid_config(8)) == []


@pytest.mark.parametrize("sizes, expected_note", [([16, 16, 16, 16], False), ([16, 16, 16, 17], True)])
def test_tensor_note_appears_just_above_two_to_the_sixteen_nodes(sizes, expected_note):
    nodes = 16 ** 3 * sizes[-1]   # 65 536 = 2¹⁶ (the budget itself: no note) or 69 632
    # L = 1, d = K = 1: the state is 2·nodes < 10⁶, so only the tensor budget can speak
    notes = size_notes(rules_config(f'{{ kind = "gaussian_trapezoid", size = {sizes} }}', hidden=("tanh",)))
    assert len(notes) == (1 if expected_note else 0), notes
    if expected_note:
        assert (f"layer 1's rule (rules.default) is a tensor product of {nodes:,} nodes over 4 coordinates "
                f"(budget 65,536 = 2^16") in notes[0], notes[0]
        assert "unknowns" not in notes[0] and 'kind = "sobol"' in notes[0]


def test_tensor_kind_rules_of_one_layer_are_named_by_their_key():
    text = (rules_config('{ kind = "gauss_hermite", size = 4 }') + "")
    text = text.replace("default = ", 'layer_2 = { kind = "tensor", rules = [{ kind = "gauss_hermite", size = 300 }, '
                        '{ kind = "gaussian_trapezoid", size = 300 }] }\ndefault = ')
    notes = size_notes(text)
    # layer 2: 90 000 nodes over 2 coordinates; state 4 + 4·90 000 + 90 000 = 450 004 < 10⁶
    assert len(notes) == 1 and "layer 2's rule (rules.layer_2) is a tensor product of 90,000 nodes over 2" in notes[0]
    assert "layer 1" not in notes[0]


@pytest.mark.parametrize("rule", ['{ kind = "sobol", size = 131072, dim = 4 }',
                                  '{ kind = "gaussian_trapezoid", size = 200000 }'])
def test_joint_and_one_dimensional_rules_of_many_nodes_are_no_tensor_product(rule):
    # 2¹⁷ Sobol' points in 4 coordinates, or 2·10⁵ trapezoid nodes in 1: L = 1, state 2·Q < 10⁶
    assert size_notes(rules_config(rule, hidden=("tanh",))) == []


def test_iid_tensor_over_five_coordinates_gets_both_notes_in_one_line():
    # L = 1, d = 2, K = 3: one index space of (w_1, v), 12⁵ = 248 832 nodes, state 248 832 · (2 + 3)
    nodes = 12 ** 5
    notes = size_notes(iid_config(12, hidden=("tanh",), biases="false", b=""))
    assert len(notes) == 1, notes
    assert f"the state would have {nodes * 5:,} unknowns" in notes[0]
    assert f"layer 1's rule (iid.rule) is a tensor product of {nodes:,} nodes over 5 coordinates" in notes[0]
    over = size_notes(iid_config(8, hidden=("tanh",), biases="false", b="",
                                 layer_1='{kind = "gauss_hermite", size = 10}'))
    assert len(over) == 1 and "(iid.rules.layer_1) is a tensor product of 100,000 nodes" in over[0], over
    # the same layer on a joint Sobol' rule of 4096 points: 4096 · 5 unknowns, no note
    assert size_notes(iid_config(12, hidden=("tanh",), biases="false", b="",
                                 layer_1='{kind = "sobol", size = 4096}')) == []


def test_the_cli_prints_the_note_before_any_work(tmp_path, capsys):
    (tmp_path / "big.toml").write_text(rules_config('{ kind = "gaussian_trapezoid", size = 1000 }'))
    (tmp_path / "afile").write_text("x")
    # the output path is refused after the notes are printed and before anything is solved
    assert main(["solve", str(tmp_path / "big.toml"), "-o", str(tmp_path / "afile" / "out.nc"), "-q"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("mfpde: warning: large discretization: the state would have 1,002,000 unknowns"), err
    assert err[-1].startswith("mfpde: error: ") and len(err) == 2, err

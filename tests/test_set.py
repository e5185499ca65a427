"""``--set KEY=VALUE`` / ``mfpde.load(..., set=...)``: any configuration key by its dotted path,
validated like the file, recorded in the result's stored configuration."""
from __future__ import annotations

import tomllib

import pytest
import xarray as xr

import mfpde
from mfpde.api import parse_set, set_key
from mfpde.cli import main
from mfpde.errors import ConfigError

TINY = """\
name = "tiny"
[model]
input_dim = 1
hidden = ["tanh", "tanh"]
[iid]
rule = { kind = "gaussian_trapezoid", size = 8 }
W = [{ mean = 0.5, std = 1.0 }]
[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 2.0 }
rule = { kind = "gauss_hermite", size = 8 }
[solver]
stepper = "rk4"
dt = 0.05
t_end = 1.0
save_times = [0.0, 0.5, 1.0]
[sgd]
widths = [8]
replicas = 1
"""


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


def test_parse_set_reads_toml_values_and_falls_back_to_strings():
    got = parse_set(["solver.t_end=5", 'model.hidden=["tanh", "relu"]', "solver.stepper=dopri5",
                     "iid.w_1={ law = \"uniform\", low = -1, high = 1 }", "output.path=a b.nc", "x.y=true"])
    assert got == {"solver.t_end": 5, "model.hidden": ["tanh", "relu"], "solver.stepper": "dopri5",
                   "iid.w_1": {"law": "uniform", "low": -1, "high": 1}, "output.path": "a b.nc", "x.y": True}
    assert parse_set(["name=x\nseed = 3"]) == {"name": "x\nseed = 3"}   # one value, never a second key
    with pytest.raises(ConfigError, match="^--set: expected KEY=VALUE"):
        parse_set(["solver.t_end"])


def test_set_key_creates_tables_indexes_lists_and_refuses_paths_through_values():
    raw = {"iid": {"W": [{"mean": 0.0}]}, "solver": {"dt": 0.1}}
    set_key(raw, "iid.W[0].mean", 0.7)
    set_key(raw, "rules.layer_1.size", 32)
    assert raw == {"iid": {"W": [{"mean": 0.7}]}, "solver": {"dt": 0.1}, "rules": {"layer_1": {"size": 32}}}
    for key, msg in (("solver.dt.x", "solver.dt is 0.1, not a table"), ("iid.W[3].mean", "iid.W\\[3\\] does not exist"),
                     ("a..b", "not a dotted configuration key"), ("iid.U[0]", "iid.U is not in the configuration")):
        with pytest.raises(ConfigError, match=f"^{key.replace('[', '.').replace(']', '.')}: .*{msg}"):
            set_key(raw, key, 1)


def test_load_applies_sets_validates_and_records_them(tiny):
    c = mfpde.load(tiny, set={"iid.W[0].mean": 0.25, "model.hidden": ["tanh", "erf"], "solver.t_end": 0.5})
    assert c.problem.model.activations == ("tanh", "erf")
    assert c.raw["iid"]["W"][0]["mean"] == 0.25 and c.problem.config["model"]["hidden"] == ["tanh", "erf"]
    assert c.solver.t_end == 0.5 and list(c.solver.save_times) == [0.0, 0.5]   # like t_end=0.5: later saves dropped
    assert mfpde.load(tiny, set={"solver.t_end": 0.5}, t_end=1.0).solver.t_end == 1.0   # the keyword wins
    again = mfpde.load(mfpde.load(tiny), set={"model.hidden": ["relu", "tanh"]})        # a built Config, rebuilt
    assert again.problem.model.activations == ("relu", "tanh")
    for sets, key in (({"solver.t_endd": 5}, "solver"), ({"model.hidden": ["tanh", "nope"]}, "model.hidden"),
                      ({"solver.t_end": -1.0}, "solver.t_end"), ({"iid.W[0].mean": "high"}, "iid.W[0].mean")):
        with pytest.raises(ConfigError) as e:
            mfpde.load(tiny, set=sets)
        assert str(e.value).startswith(key), str(e.value)


def test_cli_solve_set_is_recorded_and_a_bad_one_is_one_line_exit_2(tiny, tmp_path, capsys):
    out = tmp_path / "o.nc"
    assert main(["solve", str(tiny), "-q", "-o", str(out), "--set", "iid.W[0].mean=0.125",
                 "--set", "solver.save_times=[0.0, 1.0]", "--set", "name=renamed"]) == 0
    with xr.open_dataset(out) as ds:
        stored = tomllib.loads(ds.attrs["config"])
        assert ds.sizes["time"] == 2
    assert stored["iid"]["W"][0]["mean"] == 0.125 and stored["name"] == "renamed"
    capsys.readouterr()
    for bad, key in (("solver.t_end=-2", "solver.t_end"), ("model.hiddn=[]", "model"), ("solver", "--set")):
        assert main(["solve", str(tiny), "-q", "-o", str(tmp_path / "x.nc"), "--set", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"mfpde: error: {key}"), err
    assert not (tmp_path / "x.nc").exists()


def test_cli_sgd_takes_set_too(tiny, tmp_path, capsys):
    assert main(["sgd", str(tiny), "-q", "--no-progress", "-o", str(tmp_path / "r.h5"), "--set", "sgd.widths=[0]"]) == 2
    assert capsys.readouterr().err.startswith("mfpde: error: sgd.widths")
    assert main(["sgd", str(tiny), "-q", "--no-progress", "-o", str(tmp_path / "r.h5"),
                 "--set", "solver.t_end=0.5", "--set", "sgd.widths=[6]"]) == 0
    import h5py

    with h5py.File(tmp_path / "r.h5", "r") as f:
        stored = tomllib.loads(f.attrs["config"])
    assert stored["sgd"]["widths"] == [6] and stored["solver"]["t_end"] == 0.5

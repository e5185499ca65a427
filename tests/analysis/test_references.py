"""Stored reference solutions (data/references, docs/references.md): verify, manifest, refine.

What CI runs is `mfpde verify` on every stored reference; the other tests check that the
references are trustworthy (estimated error < 1e-6 in loss, converging refinement tables),
that the regression net catches a real change of the right-hand side and a corrupted file,
and that `mfpde refine` works as a user feature.
"""
from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from mfpde.store import netcdf as io

from mfpde.analysis import references
from mfpde.cli import main
from mfpde.problem.schedules import PIECEWISE
from mfpde.system.system import System

REF_DIR = Path(__file__).resolve().parents[2] / "data" / "references"
NAMES = sorted(p.stem for p in REF_DIR.glob("*.nc"))
EPS = 1e-4

TINY = """\
name = "tiny_refine"

[model]
input_dim = 1
hidden = ["tanh", "tanh"]

[rules]
default = { kind = "gaussian_trapezoid", size = 8, half_width = 6.0 }

[init]
W_2 = 0.5

[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 1.0 }
input_std = 0.5
rule = { kind = "gaussian_trapezoid", size = 32, half_width = 6.0 }

[probes]
kind = "grid"
low = -1.0
high = 1.0
size = 3

[solver]
stepper = "rk4"
dt = 0.1
t_end = 1.0
save_every = 0.5
"""


def test_catalogue_is_stored():
    """6–10 references, one per catalogue entry, each with its config next to it."""
    assert 6 <= len(NAMES) <= 10
    assert set(NAMES) == set(references.CATALOGUE)
    for name in NAMES:
        assert (REF_DIR / f"{name}.toml").is_file()
        assert (REF_DIR / f"{name}.nc").stat().st_size < 400 * 1024


def test_manifest_matches_every_file():
    manifest = references.read_manifest(REF_DIR)
    on_disk = sorted(p.name for p in REF_DIR.iterdir() if p.suffix in (".nc", ".toml"))
    assert sorted(manifest) == on_disk
    for fname, digest in manifest.items():
        assert references.sha256(REF_DIR / fname) == digest, fname


@pytest.mark.parametrize("name", NAMES)
def test_stored_error_estimate_is_below_1e_6_and_refinement_converges(name):
    ds = io.read(REF_DIR / f"{name}.nc")
    est = ds.attrs["error_estimate_loss"]
    assert 0 <= est < 1e-6
    assert "sup over the saved times" in ds.attrs["error_estimate_norm"]
    assert est == pytest.approx(ds.attrs["error_estimate_loss_rule"] + ds.attrs["error_estimate_loss_time"])
    # the estimate is a difference to the next refinement: the refinement must be converging
    rule = ds["rule_difference_loss"].values
    assert rule[-1] < rule[0] / 10
    assert ds.attrs["verify_tolerance_loss"] == references.tolerance(est)
    # the file carries its configuration, identical to the sibling TOML
    assert tomllib.loads(ds.attrs["config"]) == tomllib.loads((REF_DIR / f"{name}.toml").read_text(encoding="utf-8"))


def test_verify_passes_on_every_stored_reference(capsys):
    """What CI runs: `mfpde verify` re-solves every reference and compares within tolerance."""
    rc = main(["verify", "--dir", str(REF_DIR)])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in NAMES:
        assert name in out
    assert f"{len(NAMES)} passed, 0 failed" in out


def _perturb_last_activation_derivative(monkeypatch, eps=EPS):
    """Make every System compute its drift with φ_L' replaced by (1 + eps) φ_L' in backprop.

    The compiled kernels cannot be monkeypatched, but this change has an exact equivalent
    in their inputs: δ_L = (δ_{L+1} · v) φ_L'(h_L), and every δ_l with l ≤ L is linear in
    δ_L, so scaling φ_L' by (1 + eps) scales the drift of w_1, W_2 … W_L and b_1 … b_L —
    and of nothing else (v and b_out do not see φ_L') — by exactly (1 + eps).  Those drifts
    are also multiplied by the schedules ξ_l, ξ^b_l (l ≤ L), which the kernels read from
    ``System.sched``; scaling those rows after construction is therefore the same as a
    1e-4 relative error in the last hidden activation's derivative — the kind of slip
    (a wrong constant in φ', a mis-scaled multiplier) the regression net must catch.
    """
    init = System.__init__

    def perturbed(self, problem):
        init(self, problem)
        L = problem.model.L
        for g in list(range(L)) + list(range(L + 1, 2 * L + 1)):   # weight groups 1..L, bias groups 1..L
            row = self.sched[g]
            if row[0] == PIECEWISE:
                off, m = int(row[4]), int(row[5])
                self.sched_flat[off + m:off + 2 * m + 1] *= 1 + eps
            else:
                row[1] *= 1 + eps   # ξ0 of constant and power schedules

    monkeypatch.setattr(System, "__init__", perturbed)


def test_perturbed_rhs_makes_verify_fail(monkeypatch, capsys):
    _perturb_last_activation_derivative(monkeypatch)
    rc = main(["verify", "--dir", str(REF_DIR)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert f"0 passed, {len(NAMES)} failed" in out   # every single reference catches it
    assert out.count("deviation above tolerance") == len(NAMES)


def test_perturbation_is_caught_with_margin(monkeypatch):
    """The deviation a 1e-4 change causes is far above each tolerance (not a near miss)."""
    _perturb_last_activation_derivative(monkeypatch)
    for r in references.verify(["iid_l3_collapsed", "frozen_ends_l3"], REF_DIR):   # the two slowest movers
        assert not r.ok
        assert r.dev_loss > 10 * r.tol_loss, (r.name, r.dev_loss, r.tol_loss)


def test_corrupted_file_fails_the_manifest_check(tmp_path, capsys):
    name = "iid_l3_collapsed"
    for f in (f"{name}.nc", f"{name}.toml", references.MANIFEST):
        shutil.copy(REF_DIR / f, tmp_path / f)
    path = tmp_path / f"{name}.nc"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01                      # flip one bit of one byte
    path.write_bytes(bytes(data))
    rc = main(["verify", "--dir", str(tmp_path), name])
    out = capsys.readouterr().out
    assert rc == 1
    assert str(path) in out and "SHA-256 does not match the manifest" in out and "FAIL" in out


def test_edited_config_fails_the_manifest_check(tmp_path, capsys):
    name = "softmax_k3"
    for f in (f"{name}.nc", f"{name}.toml", references.MANIFEST):
        shutil.copy(REF_DIR / f, tmp_path / f)
    toml = tmp_path / f"{name}.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("t_end = 2.0", "t_end = 3.0"), encoding="utf-8")
    assert main(["verify", "--dir", str(tmp_path), name]) == 1
    assert f"{toml}" in capsys.readouterr().out


def test_verify_user_errors_exit_2(tmp_path, capsys):
    assert main(["verify", "--dir", str(REF_DIR), "no_such_reference"]) == 2
    assert "unknown reference 'no_such_reference'" in capsys.readouterr().err
    assert main(["verify", "--dir", str(tmp_path)]) == 2          # no manifest
    assert "no manifest" in capsys.readouterr().err


def test_rebuild_reproduces_the_stored_numbers(tmp_path, capsys):
    """`mfpde reference build` from the stored config gives the stored numbers within the estimate."""
    name = "iid_l3_collapsed"
    shutil.copy(REF_DIR / f"{name}.toml", tmp_path / f"{name}.toml")
    assert main(["reference", "build", name, "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rule refinement" in out and "time refinement" in out and "order" in out
    old, new = io.read(REF_DIR / f"{name}.nc"), io.read(tmp_path / f"{name}.nc")
    est = old.attrs["error_estimate_loss"]
    assert np.max(np.abs(new["loss_train"].values - old["loss_train"].values)) <= est
    assert new.attrs["error_estimate_loss"] == pytest.approx(est, rel=1e-2, abs=1e-13)
    manifest = references.read_manifest(tmp_path)
    assert set(manifest) == {f"{name}.nc", f"{name}.toml"}


def test_refine_prints_orders_and_writes_the_table(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY, encoding="utf-8")
    out_nc = tmp_path / "table.nc"
    rc = main(["refine", str(cfg), "--rule-sizes", "8,16,32", "--data-sizes", "32,32,64",
               "--dt", "0.2,0.1,0.05", "-o", str(out_nc), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "order" in out and "error estimate" in out
    ds = io.read(out_nc)
    assert ds["refine_loss_train"].shape == (3, 3, 3)            # rule levels × dt values × saved times
    assert list(ds["refine_index_size"].values) == [8, 16, 32]
    assert list(ds["refine_dt"].values) == [0.2, 0.1, 0.05]
    # RK4: the successive differences in dt fall like dt^4
    assert ds["time_order"].values[0] == pytest.approx(4.0, abs=0.5)
    assert ds["rule_difference_loss"].values[1] < ds["rule_difference_loss"].values[0]
    assert ds.attrs["refine_error_estimate_loss"] > 0


def test_refine_rejects_the_wrong_time_flag(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY, encoding="utf-8")
    assert main(["refine", str(cfg), "--rule-sizes", "8,16", "--rtol", "1e-6,1e-8"]) == 2
    assert "--rtol" in capsys.readouterr().err


# --------------------------------------------------------------------------- malformed reference folders (issue 13)

def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mfpde: error: ") and "Traceback" not in err, err
    return lines[0]


def _copy_reference(tmp_path, name="finite_arrays"):
    for f in (f"{name}.nc", f"{name}.toml", references.MANIFEST):
        shutil.copy(REF_DIR / f, tmp_path / f)
    return tmp_path / f"{name}.nc", tmp_path / f"{name}.toml", tmp_path / references.MANIFEST


def _digest_line(path):
    return f"{references.sha256(path)}  {path.name}\n"


@pytest.mark.parametrize("manifest, fragment", [
    (lambda nc, toml: b"\xff\xfe" + _digest_line(nc).encode(), "not UTF-8 text"),
    (lambda nc, toml: ("z" * 64 + f"  {nc.name}\n" + _digest_line(toml)).encode(), "expected 'SHA256  FILE'"),
    (lambda nc, toml: (_digest_line(nc) + "0" * 64 + f"  {nc.name}\n" + _digest_line(toml)).encode(), "a second time"),
    (lambda nc, toml: (_digest_line(nc).replace(nc.name, "../" + nc.name) + _digest_line(toml)).encode(),
     "a file name of this folder"),
])
def test_malformed_manifest_exits_2_with_one_line_naming_it(tmp_path, capsys, manifest, fragment):
    nc, toml, man = _copy_reference(tmp_path)
    man.write_bytes(manifest(nc, toml))
    assert main(["verify", "--dir", str(tmp_path)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(man) in line and fragment in line, line


def _edit_nc(nc, edit):
    ds = edit(io.read(nc))
    nc.unlink()
    io.write(ds, nc)


def _set_attr(key, value):
    def edit(ds):
        if value is None:
            del ds.attrs[key]
        else:
            ds.attrs[key] = value
        return ds
    return edit


@pytest.mark.parametrize("damage, which, fragment", [
    (lambda nc, toml: toml.write_text("[model\n"), "toml", "is not valid TOML"),
    (lambda nc, toml: toml.write_bytes(b"name = \"\xff\"\n"), "toml", "not UTF-8 text"),
    (lambda nc, toml: _edit_nc(nc, _set_attr("error_estimate_loss", "abc")), "nc", "error_estimate_loss"),
    (lambda nc, toml: _edit_nc(nc, _set_attr("error_estimate_loss", "1e9")), "nc", "error_estimate_loss"),
    (lambda nc, toml: _edit_nc(nc, _set_attr("error_estimate_loss", -1.0)), "nc", "error_estimate_loss"),
    (lambda nc, toml: _edit_nc(nc, _set_attr("error_estimate_loss", float("nan"))), "nc", "error_estimate_loss"),
    (lambda nc, toml: _edit_nc(nc, _set_attr("error_estimate_yhat", None)), "nc", "error_estimate_yhat"),
    (lambda nc, toml: _edit_nc(nc, _set_attr("config", "[x")), "nc", "attribute config"),
    (lambda nc, toml: _edit_nc(nc, _set_attr("config", None)), "nc", "attribute config"),
    (lambda nc, toml: _edit_nc(nc, lambda ds: ds.drop_vars("loss_train")), "nc", "loss_train"),
], ids=["toml-not-toml", "toml-not-utf8", "estimate-text", "estimate-number-as-text", "estimate-negative",
        "estimate-nan", "yhat-estimate-missing", "config-attr-not-toml", "config-attr-missing", "loss-missing"])
def test_malformed_reference_fails_verify_with_one_row_naming_the_file_and_key(tmp_path, capsys, damage, which,
                                                                               fragment):
    """A reference whose files are consistent with the manifest but malformed FAILs (exit 1), never
    passes and never raises: its row names the file and the key."""
    nc, toml, man = _copy_reference(tmp_path)
    damage(nc, toml)
    references.write_manifest(tmp_path)            # the manifest agrees: only the content is wrong
    assert main(["verify", "--dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err == "" and "Traceback" not in captured.out
    row = next(ln for ln in captured.out.splitlines() if ln.startswith("finite_arrays"))
    assert "FAIL" in row and str(nc if which == "nc" else toml) in row and fragment in row, row
    assert "0 passed, 1 failed" in captured.out


@pytest.mark.parametrize("args, fragment", [
    (["--dir", str(REF_DIR), "a" * 300], "a" * 300),
    (["--dir", "/tmp/" + "b" * 300], "b" * 300),
    (["--dir", "/tmp/a\0b"], "--dir"),
])
def test_verify_of_an_unusable_name_exits_2_with_one_line(capsys, args, fragment):
    assert main(["verify", *args]) == 2
    assert fragment in _one_error_line(capsys.readouterr().err)


def test_tolerance_refuses_what_is_not_a_number():
    from mfpde.errors import ConfigError

    for bad in ("1e9", True, None, [1.0]):
        with pytest.raises(ConfigError):
            references.tolerance(bad)
    assert references.tolerance(np.float64(1e-8)) == pytest.approx(1e-7)

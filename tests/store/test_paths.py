"""Output paths are checked before any work (mfpde/store/paths.py): one ConfigError naming the option,
nothing written, an existing file replaced only if it is an mfpde output of the same kind or
with overwrite, an input never."""
from __future__ import annotations

import os
import re
import sys

import h5py
import numpy as np
import pytest
import xarray as xr

from mfpde.store import netcdf as io

from mfpde.store import paths

from mfpde.store import runs
from mfpde.errors import ConfigError
from mfpde.store.paths import check_output, check_outputs, sniff


def _limit(path, title="mfpde mean-field limit solution: tiny", **attrs):
    io.write(xr.Dataset({"loss_train": ("time", np.arange(3.0))}, coords={"time": np.arange(3.0)},
                        attrs={"title": title, **attrs}), path)
    return path


def _listing(d):
    return sorted(os.listdir(d))


@pytest.fixture
def files(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "config.toml").write_text('name = "t"\n')
    return tmp_path


@pytest.mark.parametrize("target, kind, words", [
    ("afile/o.nc", "limit", "'afile' is not a folder"),
    ("afile/sub/deeper/o.nc", "limit", "'afile' is not a folder"),
    ("afile/../o.nc", "limit", "is not a folder"),
    ("adir", "limit", "is a folder"),
    ("adir/", "runs", "names a folder"),
    (".", "limit", "names a folder"),
    ("afile", "directory", "is a file, not a folder"),
    ("afile", "sweep", "is a file, not a folder"),
    ("x" * 256 + ".nc", "limit", "the file system allows at most 255"),
    ("adir/" + "y" * 300 + "/o.nc", "limit", "the file system allows at most 255"),
    ("z" * 240 + ".nc", "limit", "needs room for a temporary name"),
    ("/".join(["d" * 200] * 21) + "/o.nc", "limit", "PATH_MAX"),
    ("", "limit", "empty string"),
    ("a\0b.nc", "limit", "NUL"),
])
def test_bad_output_path_is_one_config_error_naming_the_option_and_writes_nothing(files, monkeypatch, target, kind,
                                                                                  words):
    monkeypatch.chdir(files)
    before = _listing(files), _listing(files / "adir")
    with pytest.raises(ConfigError) as exc:
        check_output(target, kind=kind, key="--output")
    msg = str(exc.value)
    assert msg.startswith("--output: ") and words in msg, msg
    assert "\n" not in msg
    assert (_listing(files), _listing(files / "adir")) == before


def test_long_names_are_measured_in_bytes_not_characters(files):
    name = "é" * 120 + ".nc"         # 123 characters, 243 bytes
    with pytest.raises(ConfigError, match="243 bytes"):
        check_output(files / name, kind="limit")
    check_output(files / ("é" * 100 + ".nc"), kind="limit")   # 203 bytes: fine


def test_missing_folders_below_a_writable_folder_are_fine_and_not_created(files):
    out = files / "new" / "deeper" / "o.nc"
    assert check_output(out, kind="limit") == out
    assert not (files / "new").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_a_folder_no_file_can_be_created_in_is_refused_even_when_os_access_says_yes():
    assert os.access("/proc", os.W_OK) or os.geteuid() != 0   # root: os.access says yes, the probe says no
    with pytest.raises(ConfigError, match="cannot create a file in folder '/proc'"):
        check_output("/proc/o.nc", kind="limit")


def test_a_special_file_is_never_replaced(tmp_path):
    with pytest.raises(ConfigError, match="not a regular file"):
        check_output("/dev/null", kind="limit", overwrite=True)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        check_output(fifo, kind="runs", overwrite=True)


def test_existing_foreign_file_is_refused_without_overwrite_and_left_intact(files):
    cfg = files / "config.toml"
    with pytest.raises(ConfigError, match=r"exists and is not an mfpde output; pass --overwrite to replace it with a limit solution"):
        check_output(cfg, kind="limit")
    assert cfg.read_text() == 'name = "t"\n'
    assert check_output(cfg, kind="limit", overwrite=True) == cfg


def test_damaged_hdf5_file_is_not_an_mfpde_output_and_sniffing_never_raises(tmp_path):
    good = _limit(tmp_path / "good.nc")
    data = good.read_bytes()
    for i, cut in enumerate((8, 100, len(data) // 2, len(data) - 1)):
        bad = tmp_path / f"bad{i}.nc"
        bad.write_bytes(data[:cut])
        assert sniff(bad) is None
        with pytest.raises(ConfigError, match="not an mfpde output"):
            check_output(bad, kind="limit")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(paths.HDF5_SIGNATURE + bytes(range(256)) * 3)
    assert sniff(junk) is None
    assert sniff(tmp_path / "absent") is None and sniff(tmp_path) is None


def test_each_kind_of_mfpde_output_is_recognized_and_replaced_only_by_the_same_kind(tmp_path):
    made = {
        "limit": _limit(tmp_path / "limit.nc"),
        "reference": _limit(tmp_path / "ref.nc", reference_name="ref"),
        "refine": _limit(tmp_path / "refine.nc", title="mfpde refinement study: tiny"),
        "compare": _limit(tmp_path / "cmp.nc", title="mfpde comparison: limit vs finite width"),
        "collect": _limit(tmp_path / "sweep.nc", title="mfpde sweep: s"),
    }
    with runs.RunStore(tmp_path / "runs.h5", "a", attrs={"config": "x"}):
        made["runs"] = tmp_path / "runs.h5"
    with h5py.File(tmp_path / "ck.h5", "w") as f:
        f.attrs["format"] = "mfpde-checkpoint"
    made["checkpoint"] = tmp_path / "ck.h5"
    (tmp_path / "MANIFEST.sha256").write_text("0" * 64 + "  a.nc\n" + "f" * 64 + "  b.toml\n")
    made["manifest"] = tmp_path / "MANIFEST.sha256"
    legacy = tmp_path / "legacy_cmp.nc"   # comparisons written before they had a title
    io.write(xr.Dataset({"a": ("width", [1.0])}, attrs={"loss": "loss_train", "expected_rate": 0.5}), legacy)
    assert sniff(legacy) == "compare"
    for kind, path in made.items():
        assert sniff(path) == kind, path
        before = path.read_bytes()
        assert check_output(path, kind=kind) == path
        for other in made:
            if other != kind:
                with pytest.raises(ConfigError, match=f"exists and is {re.escape(paths.FILE_KINDS[kind])}, not {re.escape(paths.FILE_KINDS[other])}; "):
                    check_output(path, kind=other)
        assert path.read_bytes() == before


@pytest.mark.parametrize("link", ["same", "relative", "hard", "symbolic"])
def test_an_input_is_never_an_output_even_with_overwrite(files, monkeypatch, link):
    monkeypatch.chdir(files)
    cfg = files / "config.toml"
    target = {"same": cfg, "relative": "config.toml", "hard": files / "hard.toml", "symbolic": files / "sym.toml"}[link]
    if link == "hard":
        os.link(cfg, target)
    if link == "symbolic":
        os.symlink(cfg, target)
    with pytest.raises(ConfigError, match="input .*never overwritten"):
        check_output(target, kind="limit", overwrite=True, inputs=[str(cfg)])
    assert cfg.read_text() == 'name = "t"\n'


def test_two_outputs_of_one_command_are_never_the_same_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^--checkpoint: 'o.nc' is the same file as --output"):
        check_outputs([("--output", tmp_path / "o.nc", "limit"), ("--checkpoint", "o.nc", "checkpoint")])


def test_an_sgd_checkpoint_folder_with_foreign_files_is_refused(tmp_path):
    ck = tmp_path / "runs.h5.ckpt"
    ck.mkdir()
    with h5py.File(ck / "w4_r0.h5", "w") as f:
        f.attrs["format"] = "mfpde-sgd-checkpoint"
    (ck / ".w4_r0.h5.abc.tmp").write_bytes(b"")
    check_output(ck, kind="sgd-checkpoints")
    (ck / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="'notes.txt', which is not an SGD checkpoint"):
        check_output(ck, kind="sgd-checkpoints")
    check_output(ck, kind="sgd-checkpoints", overwrite=True)


def test_a_sweep_folder_with_a_foreign_index_is_refused(tmp_path):
    d = tmp_path / "sw"
    d.mkdir()
    check_output(d, kind="sweep")
    (d / "index.json").write_text('{"format": "mfpde-sweep", "tasks": {}}')
    check_output(d, kind="sweep")
    (d / "index.json").write_text('{"mine": 1}')
    with pytest.raises(ConfigError, match="not an mfpde sweep index"):
        check_output(d, kind="sweep")


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_a_matplotlib_figure_in_any_format_is_a_figure_and_a_foreign_pdf_is_not(tmp_path, fmt):
    """`mfpde plot --format pdf|svg` re-run into the same folder replaces its own figures
    without --overwrite; a PDF or SVG that matplotlib did not make is not taken for one."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = tmp_path / f"f.{fmt}"
    fig.savefig(path, format=fmt)
    plt.close(fig)
    assert sniff(path) == "figure"
    assert check_output(path, kind="figure") == path
    foreign = tmp_path / f"paper.{fmt}"
    foreign.write_bytes({"png": b"\x89PNG\r\n\x1a\n" + b"x" * 10, "pdf": b"%PDF-1.7\n% a paper\n",
                         "svg": b"<svg xmlns='http://www.w3.org/2000/svg'></svg>"}[fmt])
    if fmt != "png":   # any PNG counts as a figure (documented in paths.FILE_KINDS)
        assert sniff(foreign) is None
        with pytest.raises(ConfigError, match="--overwrite"):
            check_output(foreign, kind="figure")

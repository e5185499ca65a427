"""Storage under attack (issue 13): one atomic-write mechanism for every file mfpde writes,
checksummed metadata, a full disk, two writers of one store, killed writers' temporary files,
and `mfpde show` on a collected sweep."""
from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import xarray as xr

from mfpde import finite, sweep

from mfpde.store import atomic

from mfpde.problem import config

from mfpde.store import netcdf as io

from mfpde.analysis import references

from mfpde.store import runs
from mfpde.cli import main
from mfpde.errors import StoreError
from mfpde.solvers import checkpoint as solve_ck
from tiny import tiny_toml

TINY = tiny_toml("storage", widths=[4])   # tests/tiny.py
ENV = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
CLI = [sys.executable, "-m", "mfpde.cli"]


def _run(seed=0, width=4, replica=0, status="completed"):
    return SimpleNamespace(width=(width, width), replica=replica, times=[0.0, 0.1, 0.2],
                           observables={"loss_train": [1.0 + seed, 0.5, 0.25]}, stats={"steps": 20},
                           status=status, message="", seed={"seed": seed})


def _sol():
    return SimpleNamespace(times=[0.0, 0.5], state_times=[0.0, 0.5], states=[np.zeros(3), np.ones(3)],
                           observables={"loss_train": [1.0, 0.5]})


def _stepper():
    state = {"h": np.array([0.1]), "k": 0.25}    # what Stepper.state() returns: arrays and scalars
    return SimpleNamespace(name="fake", stats={"steps": 10}, state=lambda: dict(state))


# the five writers of mfpde, each (write a first version, write a second version, read back a marker)
def _writers(tmp_path):
    ds = xr.Dataset({"loss_train": ("time", np.array([1.0, 0.5]))}, coords={"time": [0.0, 1.0]}, attrs={"v": "one"})

    def nc(version):
        io.write(ds.assign_attrs(v=version), tmp_path / "r.nc")

    def store(version):
        with runs.RunStore(tmp_path / "s.h5", "a", attrs={"config": "x"}) as s:
            s.write(_run(seed=0 if version == "one" else 1))

    def sgd_ck(version):
        runs.write_checkpoint(tmp_path / "sgd.h5", {"v": version}, {"y": np.arange(3.0)})

    def ck(version):
        solve_ck.write(tmp_path / "ck.h5", 0.5, np.ones(3), _sol(), _stepper(), version, 1)

    def index(version):
        sweep._write_text_atomic(tmp_path / "index.json", json.dumps({"v": version}))

    def manifest(version):
        (tmp_path / "ref.toml").write_text(f"# {version}\n")
        references.write_manifest(tmp_path)

    def marker(name):
        p = tmp_path / name
        return p.read_bytes()

    return {"nc": (nc, "r.nc"), "store": (store, "s.h5"), "sgd_ck": (sgd_ck, "sgd.h5"), "ck": (ck, "ck.h5"),
            "index": (index, "index.json"), "manifest": (manifest, "MANIFEST.sha256")}, marker


WRITERS = ["nc", "store", "sgd_ck", "ck", "index", "manifest"]


# --------------------------------------------------------------------------- 0. one atomic write
@pytest.mark.parametrize("kind", WRITERS)
def test_every_writer_interrupted_at_the_rename_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, kind):
    writers, read = _writers(tmp_path)
    write, name = writers[kind]
    write("one")
    before = read(name)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write("two")
    monkeypatch.undo()
    assert read(name) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("kind", WRITERS)
def test_every_writer_uses_the_umask_mode_and_fsyncs_file_and_folder(tmp_path, monkeypatch, kind):
    writers, _ = _writers(tmp_path)
    write, name = writers[kind]
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    old = os.umask(0o027)
    try:
        write("one")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640
    assert False in synced and True in synced   # the file, then the folder (the rename survives a crash)


@pytest.mark.parametrize("kind", WRITERS)
def test_every_writer_removes_temporaries_of_dead_writers_only(tmp_path, kind):
    writers, _ = _writers(tmp_path)
    write, name = writers[kind]
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        target = tmp_path / name
        stale = atomic.temp_path(target).name.replace(f".{os.getpid()}.", f".{dead.pid}.")
        live = atomic.temp_path(target).name.replace(f".{os.getpid()}.", f".{alive.pid}.")
        legacy = f".{name}.k1ll3d_x.tmp"   # tempfile.mkstemp name of older versions
        for n in (stale, live, legacy):
            (tmp_path / n).write_bytes(b"partial")
        write("one")
        left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
        assert left == [live]
    finally:
        alive.kill()
        alive.wait()


def test_temporary_names_fit_the_room_the_path_checker_leaves():
    from mfpde.store import paths

    name = "x" * 200 + ".nc"
    worst = atomic.temp_path(Path(name)).name.replace(f".{os.getpid()}.", ".4194304.")   # the largest Linux pid
    assert len(worst.encode()) - len(name.encode()) <= paths.TEMP_ROOM


# --------------------------------------------------------------------------- 5c. killed NetCDF writers
KILLED_WRITER = textwrap.dedent("""
    import os, sys, time
    from mfpde.store import atomic
    tmp = atomic.temp_path(sys.argv[1])
    with open(tmp, "wb") as f:
        f.write(b"\\0" * 3_000_000)   # a large result being written
        f.flush()
        print("writing", flush=True)
        time.sleep(600)
""")


def test_temporaries_of_killed_netcdf_writers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "o.nc"
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "writing"
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert len([q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]) == 3
    ds = xr.Dataset({"loss_train": ("time", [1.0])}, coords={"time": [0.0]})
    io.write(ds, target)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["o.nc"]


# --------------------------------------------------------------------------- 3a/3b. metadata checksums
def _flip_in_file(path: Path, needle: bytes, at: int = 0, occurrence: int = 0) -> None:
    """Change one character of the ``occurrence``-th copy of ``needle`` in the file's bytes."""
    data = bytearray(path.read_bytes())
    pos = -1
    for _ in range(occurrence + 1):
        pos = data.find(needle, pos + 1)
        assert pos >= 0, needle
    i = pos + at
    c = chr(data[i])
    data[i] = ord(("7" if c != "7" else "3") if c.isdigit() else c.swapcase() if c.isalpha() else "x" if c != "x" else "y")
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("made")
    c = config.loads(TINY)
    ck = d / "sgd_ck.h5"
    finite.train(c.problem, 5, lr=0.05, t_end=0.5, record_times=[0.1 * k for k in range(6)],
                 checkpoint=ck, checkpoint_every=3)
    cfg = d / "s.toml"
    cfg.write_text(TINY)
    with np.errstate(all="ignore"):
        assert main(["solve", str(cfg), "-o", str(d / "limit.nc"), "-q", "--checkpoint", str(d / "solve_ck.h5")]) == 0
        assert main(["sgd", str(cfg), "-o", str(d / "runs.h5"), "-q"]) == 0
    return {"c": c, "sgd_ck": ck, "solve_ck": d / "solve_ck.h5", "nc": d / "limit.nc", "store": d / "runs.h5"}


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_one_changed_digit_of_the_rng_state_in_an_sgd_checkpoint_is_a_store_error(made, tmp_path):
    ck = _copy(made["sgd_ck"], tmp_path / "bad_ck.h5")
    a, _ = runs.load_checkpoint(ck)
    state = json.loads(a["rng"])["state"]["state"]
    _flip_in_file(ck, str(state).encode(), at=5)   # one digit of the PCG64 state
    with pytest.raises(StoreError, match="bad_ck.h5"):
        runs.load_checkpoint(ck)
    with pytest.raises(StoreError, match="bad_ck.h5"):   # and the resume refuses it
        finite.train(made["c"].problem, 5, lr=0.05, t_end=0.5, record_times=[0.1 * k for k in range(6)],
                     checkpoint=ck, checkpoint_every=3, resume=True)


@pytest.mark.parametrize("key", ["fingerprint", "rng"])
def test_any_changed_string_attribute_of_an_sgd_checkpoint_is_a_store_error(made, tmp_path, key):
    ck = _copy(made["sgd_ck"], tmp_path / f"{key}.h5")
    a, _ = runs.load_checkpoint(ck)
    _flip_in_file(ck, a[key].encode(), at=len(a[key]) // 2)
    with pytest.raises(StoreError, match=f"{key}.h5"):
        runs.load_checkpoint(ck)


@pytest.mark.parametrize("key", ["fingerprint", "stats", "stepper_scalars"])
def test_any_changed_string_attribute_of_a_solve_checkpoint_is_a_store_error(made, tmp_path, key):
    ck = _copy(made["solve_ck"], tmp_path / f"{key}.h5")
    with h5py.File(ck, "r") as f:
        value = f.attrs[key]
    digits = re.search(rb"\d", value.encode())
    _flip_in_file(ck, value.encode(), at=digits.start() if digits else 0)
    with pytest.raises(StoreError, match=f"{key}.h5"):
        solve_ck.load(ck)


def test_a_changed_status_byte_in_a_run_store_marks_the_run_damaged_not_nan(made, tmp_path):
    bad = _copy(made["store"], tmp_path / "runs.h5")
    _flip_in_file(bad, b"completed", at=8)   # "completed" -> "completeD" in one run's status
    with h5py.File(bad, "r") as f:
        hit = [n for n in f["runs"] if f["runs"][n].attrs["status"] != "completed"]
    assert len(hit) == 1
    with pytest.warns(runs.StoreWarning, match=hit[0]):
        ds = runs.read(bad)
    assert hit[0] in ds.attrs["damaged_runs"]
    good = runs.read(made["store"])
    for r in ds["replica"].values:   # the other run reads exactly
        if runs.run_name(4, r) != hit[0]:
            np.testing.assert_array_equal(ds["loss_train"].sel(width=4, replica=r).values,
                                          good["loss_train"].sel(width=4, replica=r).values)


def test_a_changed_configuration_byte_in_a_run_store_is_a_store_error(made, tmp_path):
    bad = _copy(made["store"], tmp_path / "runs.h5")
    _flip_in_file(bad, b"gaussian_trapezoid", at=0)
    with pytest.raises(StoreError, match="runs.h5"):
        runs.read(bad)


@pytest.mark.parametrize("needle", [b"gaussian_trapezoid", b'"rk4"', b"completed"])
def test_a_changed_global_attribute_byte_of_a_netcdf_result_is_a_store_error(made, tmp_path, needle):
    bad = _copy(made["nc"], tmp_path / "limit.nc")
    _flip_in_file(bad, needle, at=1)
    with pytest.raises(StoreError, match="limit.nc"):
        io.read(bad)
    assert main(["show", str(bad)]) == 2


def test_checksum_attributes_are_not_shown_and_rewriting_a_read_result_works(made, tmp_path):
    ds = io.read(made["nc"])
    assert not set(atomic.CHECKSUM_KEYS) & set(ds.attrs)
    ds.attrs["note"] = "changed after reading"
    io.write(ds, tmp_path / "again.nc")
    assert io.read(tmp_path / "again.nc").attrs["note"] == "changed after reading"


# --------------------------------------------------------------------------- 4a. a full disk
def _tiny_fs(tmp_path):
    """A 2 MB tmpfs (we are root in CI); None where mounting is not permitted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    return mnt if r.returncode == 0 else None


LIMITED = textwrap.dedent("""
    import resource, runpy, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # write() beyond the limit fails with EFBIG
    limit = int(sys.argv.pop(1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv[0] = "mfpde"
    runpy.run_module("mfpde.cli", run_name="__main__")
""")


@pytest.fixture(params=["tmpfs", "rlimit"])
def full_disk(request, tmp_path, made):
    """(folder, command prefix, expected reason) where a real write() fails: a nearly full
    2 MB tmpfs (ENOSPC), or a child whose files may not grow past 20 kB (EFBIG).  The second
    always runs, so a failed write is exercised even where mounting is not permitted."""
    if request.param == "tmpfs":
        mnt = _tiny_fs(tmp_path)
        if mnt is None:
            pytest.skip("mount -t tmpfs is not permitted here (the rlimit variant still runs)")
        try:
            _copy(made["nc"], mnt / "old.nc")
            st = os.statvfs(mnt)
            with open(mnt / "filler", "wb") as f:   # leave 20 kB
                f.write(b"\0" * (st.f_bavail * st.f_frsize - 20 * 1024))
            yield mnt, CLI, "No space left on device"
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
    else:
        d = tmp_path / "limited"
        d.mkdir()
        _copy(made["nc"], d / "old.nc")
        yield d, [sys.executable, "-c", LIMITED, str(20 * 1024)], "File too large"


def _one_error_line(r, reason, name):
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith("mfpde: error: cannot write ") and name in lines[0] and lines[0].endswith(reason), lines


def test_solve_on_a_full_disk_exits_1_with_one_line_and_keeps_the_old_file(full_disk, tmp_path, made):
    folder, cmd, reason = full_disk
    cfg = tmp_path / "s.toml"
    cfg.write_text(TINY)
    r = subprocess.run(cmd + ["solve", str(cfg), "-o", str(folder / "old.nc"), "-q"], capture_output=True,
                       text=True, timeout=600, env=ENV)
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    _one_error_line(r, reason, "old.nc")
    assert (folder / "old.nc").read_bytes() == made["nc"].read_bytes()
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_sgd_checkpoints_on_a_full_disk_exit_1_with_one_line(full_disk, tmp_path, made):
    folder, cmd, reason = full_disk
    cfg = tmp_path / "s.toml"
    cfg.write_text(TINY.replace("t_end = 0.5", "t_end = 2.0").replace("widths = [4]", "widths = [64]"))
    r = subprocess.run(cmd + ["sgd", str(cfg), "-o", str(folder / "runs.h5"), "-q", "--checkpoint-every", "2"],
                       capture_output=True, text=True, timeout=600, env=ENV)
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    _one_error_line(r, reason, ".h5")
    assert (folder / "old.nc").read_bytes() == made["nc"].read_bytes()
    left = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert left == []


def test_a_write_failing_with_enospc_leaves_no_temporary_file(tmp_path, monkeypatch):
    (tmp_path / "o.nc").write_bytes(b"old")
    real = os.write

    def full(fd, data):
        if len(data) > 100:
            real(fd, bytes(data[:100]))
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(atomic.WriteError, match=r"cannot write '.*o\.nc': No space left on device$"):
        atomic.write_bytes(tmp_path / "o.nc", b"x" * 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.nc"] and (tmp_path / "o.nc").read_bytes() == b"old"


# --------------------------------------------------------------------------- 5b. two writers of one store
HOLDER = textwrap.dedent("""
    import sys
    from mfpde.store import runs
    with runs.RunStore(sys.argv[1], "a", attrs={"config": sys.argv[2]}):
        print("holding", flush=True)
        sys.stdin.readline()
""")


def test_a_second_writer_of_a_store_is_refused_naming_the_first_process(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(TINY)
    out = tmp_path / "runs.h5"
    text = config.to_toml(config.loads(TINY).raw)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), text], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "holding"
        r = subprocess.run(CLI + ["sgd", str(cfg), "-o", str(out), "-q"], capture_output=True, text=True,
                           timeout=600, env=ENV)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "being written by another process" in lines[0] and f"pid {holder.pid}" in lines[0]
        assert "runs.h5" in lines[0]
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    r = subprocess.run(CLI + ["sgd", str(cfg), "-o", str(out), "-q"], capture_output=True, text=True,
                       timeout=600, env=ENV)
    assert r.returncode == 0, r.stderr
    assert runs.read(out).sizes["replica"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.h5", "s.toml"]   # no lock file left behind


def test_two_concurrent_sgd_processes_lose_no_run_of_the_store(tmp_path):
    """Two real `mfpde sgd` on one store (the issue: 39 of 60 runs, both exit 0): the second
    is refused while the first appends, or finds every run complete; the store holds all 60."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(TINY.replace("widths = [4]", "widths = [4, 6, 8]").replace("replicas = 2", "replicas = 20"))
    out = tmp_path / "runs.h5"
    cmd = CLI + ["sgd", str(cfg), "-o", str(out), "-q"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert rc == 0 or (rc == 2 and "is being written by another process (pid " in err
                           and len(err.strip().splitlines()) == 1), (rc, err)
    assert any(rc == 0 for rc, _ in results)
    ds = runs.read(out)
    assert (ds.sizes["width"], ds.sizes["replica"]) == (3, 20)
    assert np.all(ds["status"].values == "completed")
    assert not np.isnan(ds["loss_train"].values).any()


def test_two_store_handles_in_one_process_exclude_each_other(tmp_path):
    out = tmp_path / "runs.h5"
    with runs.RunStore(out, "a", attrs={"config": "x"}) as a:
        with pytest.raises(StoreError, match=f"being written by another process \\(pid {os.getpid()}\\)"):
            runs.RunStore(out, "a", attrs={"config": "x"})
        a.write(_run())
    with runs.RunStore(out, "a", attrs={"config": "x"}) as b:   # released on close
        b.write(_run(replica=1))
    assert runs.read(out).sizes["replica"] == 2


def test_starting_a_store_afresh_while_another_writer_holds_it_deletes_nothing(tmp_path):
    """`mfpde sgd --overwrite` (resume=False) used to delete the store and its checkpoints
    before taking the lock, so it could destroy a store another process was appending to."""
    from mfpde.finite.ensemble import run_ensemble

    c = config.loads(TINY)
    out = tmp_path / "runs.h5"
    with runs.RunStore(out, "a", attrs={"config": config.to_toml(c.raw)}) as holder:
        holder.write(_run())
        ck = runs.checkpoint_dir(out)
        ck.mkdir()
        (ck / "w4_r0.h5").write_bytes(b"a checkpoint of the holder")
        before = out.read_bytes()
        with pytest.raises(StoreError, match="being written by another process"):
            run_ensemble(c, out, resume=False, progress=False, say=lambda *a: None)
        assert out.read_bytes() == before and (ck / "w4_r0.h5").exists()


# --------------------------------------------------------------------------- 4h. show a collected sweep
def _collected(tmp_path, mode):
    base = "[base]" + re.sub(r"^\[", "[base.", TINY, flags=re.M)
    text = (f'name = "show"\nmode = "{mode}"\ntask = "solve"\n'
            '[[axis]]\nkey = "schedules.weights"\nname = "xi"\nvalues = [0.5, 1.0]\n'
            '[[axis]]\nkey = "solver.dt"\nvalues = [0.05, 0.1]\n' + base)
    sw = sweep.loads(text, source="show.toml", base_dir=tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    entries = {}
    for h, t in sw.tasks.items():
        sweep.run_task(t, str(out), numba_threads=None)
        entries[h] = {"values": t.values, "positions": [list(p) for p in t.positions], "file": t.file,
                      "status": "done", "message": "", "attempts": 1}
    first = next(iter(entries))
    entries[first]["status"], entries[first]["message"] = "failed", "BlowUpError: boom"
    sweep._write_index(out, sw, entries)
    assert main(["collect", str(out)]) == 0
    return out / "sweep.nc"


@pytest.mark.parametrize("mode", ["cross", "zip"])
def test_show_prints_a_collected_sweep(tmp_path, capsys, mode):
    nc = _collected(tmp_path, mode)
    capsys.readouterr()
    assert main(["show", str(nc)]) == 0
    out = capsys.readouterr().out
    assert "mfpde sweep: show" in out
    assert "tasks: done=" in out and "failed=1" in out
    ds = io.read(nc)
    # the per-point final losses are listed, and the medians over the points per time
    final = ds["loss_train"].isel(time=-1)
    for v in final.values.ravel():
        if np.isfinite(v):
            assert f"{v:.6e}" in out
    med = np.nanmedian(ds["loss_train"].values.reshape(-1, ds.sizes["time"]), axis=0)
    assert f"{med[0]:.6e}" in out


def test_loss_table_of_a_plain_result_is_unchanged(made):
    ds = io.read(made["nc"])
    rows = io.loss_table(ds).splitlines()
    assert rows[0].split()[:2] == ["time", "loss_train"] and len(rows) == 1 + ds.sizes["time"]
    assert float(rows[-1].split()[1]) == pytest.approx(float(ds["loss_train"].values[-1]), rel=1e-6)

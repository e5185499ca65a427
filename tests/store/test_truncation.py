"""Damaged result files: a NetCDF result, an HDF5 run store and checkpoints, truncated at
random offsets or with flipped bytes, read as the project's StoreError naming the file —
never a hang, a crash or silently wrong numbers; the undamaged runs of a store stay readable."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from mfpde.store import netcdf as io

from mfpde.store import runs
from mfpde.cli import main
from mfpde.errors import StoreError
from tiny import tiny_toml

TINY = tiny_toml("trunc")   # tests/tiny.py
# the reader of each kind of file, run in a child process (a hang or a crash is caught there)
# (attributes too: a flip must not change the configuration, the RNG state or a status either)
READERS = {
    "nc": "from mfpde.store import netcdf as io; ds = io.read(p); out = {k: ds[k].values for k in list(ds.data_vars) + list(ds.coords)}; "
          "out.update({'attr:' + k: np.asarray(v) for k, v in ds.attrs.items()})",
    "store": "from mfpde.store import runs; ds = runs.read(p); out = {k: ds[k].values for k in ds.data_vars if k != 'status'}; "
             "damaged = bool(ds.attrs.get('damaged_runs')); "
             "out.update({'attr:' + k: np.asarray(v) for k, v in ds.attrs.items() if k != 'damaged_runs'})",
    "sgd_ck": "from mfpde.store import runs; a, out = runs.load_checkpoint(p); out.update({'attr:' + k: np.asarray(v) for k, v in a.items()})",
    "solve_ck": "from mfpde.solvers.checkpoint import load; ck = load(p); out = {'y': ck['y'], **{k: np.asarray(v) for k, v in ck['observables'].items()}}; "
                "out.update({'attr:' + k: np.asarray(json.dumps(ck[k], sort_keys=True)) for k in ('fingerprint', 't', 'save_index', 'stats', 'stepper_scalars')})",
}
WORKER = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    from mfpde.errors import StoreError
    warnings.simplefilter("ignore")
    code, ref_path, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    def read(p):
        ns = {"np": np, "json": json, "p": p, "damaged": False}
        exec(code, ns)   # the reader snippet of this test file (not an input file)
        return ns["out"], ns["damaged"]
    ref, _ = read(ref_path)
    def equal(a, b, damaged):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if b.dtype.kind != "f":
            return np.array_equal(a, b)
        if damaged:   # the runs skipped as damaged read as NaN; every other number must be intact
            a = np.where(np.isnan(a), b, a)
        return np.array_equal(a, b, equal_nan=True)
    for p in paths:
        try:
            out, damaged = read(p)
        except StoreError as exc:
            res = {"outcome": "StoreError", "message": str(exc)}
        except Exception as exc:
            res = {"outcome": "other", "message": f"{type(exc).__name__}: {exc}"}
        else:
            same = sorted(out) == sorted(ref) and all(equal(out[k], ref[k], damaged) for k in ref)
            res = {"outcome": "ok", "same": bool(same), "damaged": damaged}
        print(json.dumps({"path": p, **res}), flush=True)
""")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("orig")
    cfg = d / "trunc.toml"
    cfg.write_text(TINY)
    with np.errstate(all="ignore"):
        assert main(["solve", str(cfg), "-o", str(d / "limit.nc"), "-q", "--checkpoint", str(d / "solve_ck.h5")]) == 0
        assert main(["sgd", str(cfg), "-o", str(d / "runs.h5"), "-q", "--widths", "4,6", "--replicas", "2"]) == 0
    from mfpde import finite
    from mfpde.problem import config

    c = config.loads(TINY)
    finite.train(c.problem, 5, lr=0.05, t_end=0.5, record_times=[0.1 * k for k in range(6)],
                 checkpoint=d / "sgd_ck.h5", checkpoint_every=3)
    return {"nc": d / "limit.nc", "store": d / "runs.h5", "sgd_ck": d / "sgd_ck.h5", "solve_ck": d / "solve_ck.h5"}


def _damage(src: Path, out: Path, seed: int):
    """~30 truncated and ~25 byte-flipped copies of src."""
    data = src.read_bytes()
    n = len(data)
    rng = np.random.default_rng(seed)
    cuts = sorted(set(rng.integers(0, n, 28).tolist()) | {0, 1, 8, n // 2, n - 1})
    made = []
    for c in cuts:
        p = out / f"cut{c}_{src.name}"
        p.write_bytes(data[:c])
        made.append(("cut", p))
    for i in range(25):
        b = bytearray(data)
        at = int(rng.integers(0, n))
        for j in range(at, min(n, at + int(rng.integers(1, 9)))):
            b[j] ^= int(rng.integers(1, 256))
        p = out / f"flip{i}_{src.name}"
        p.write_bytes(bytes(b))
        made.append(("flip", p))
    return made


def _read_all(kind, ref, paths, timeout=240):
    r = subprocess.run([sys.executable, "-c", WORKER, READERS[kind], str(ref), *map(str, paths)],
                       capture_output=True, text=True, timeout=timeout)   # a hang fails here
    assert r.returncode == 0, f"reader crashed (status {r.returncode}): {r.stderr[-2000:]}"
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(results) == len(paths)
    return {Path(x["path"]).name: x for x in results}


@pytest.mark.parametrize("kind", ["nc", "store", "sgd_ck", "solve_ck"])
def test_truncated_or_flipped_file_is_a_store_error_naming_it(files, tmp_path, kind):
    made = _damage(files[kind], tmp_path, seed=len(kind))
    res = _read_all(kind, files[kind], [p for _, p in made])
    counts = {"cut": 0, "flip_error": 0, "flip_ok": 0}
    for how, p in made:
        r = res[p.name]
        assert r["outcome"] in ("StoreError", "ok"), (p.name, r)
        if r["outcome"] == "StoreError":
            assert p.name in r["message"], r   # the message names the file
            assert "\n" not in r["message"]
        if how == "cut":
            assert r["outcome"] == "StoreError", (p.name, r)   # a truncated file never reads as complete
            counts["cut"] += 1
        elif r["outcome"] == "ok":
            # checksums (Fletcher-32 on data, HDF5 metadata checksums) make a flip either harmless or an error
            assert r["same"], (p.name, "a flipped byte changed the numbers read")
            counts["flip_ok"] += 1
        else:
            counts["flip_error"] += 1
    assert counts["cut"] >= 25 and counts["flip_error"] + counts["flip_ok"] == 25


def test_a_damaged_run_leaves_the_other_runs_of_the_store_readable(files, tmp_path):
    bad = tmp_path / "runs.h5"
    bad.write_bytes(files["store"].read_bytes())
    with h5py.File(bad, "r") as f:   # the raw bytes of one run's loss_train
        off = f["runs/w4_r1/loss_train"].id.get_offset() if not f["runs/w4_r1/loss_train"].chunks else \
            f["runs/w4_r1/loss_train"].id.get_chunk_info(0).byte_offset
    data = bytearray(bad.read_bytes())
    data[off + 3] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.warns(runs.StoreWarning, match="w4_r1"):
        ds = runs.read(bad)
    good = runs.read(files["store"])
    assert "w4_r1" in ds.attrs["damaged_runs"]
    for w, r in [(4, 0), (6, 0), (6, 1)]:
        np.testing.assert_array_equal(ds["loss_train"].sel(width=w, replica=r).values,
                                      good["loss_train"].sel(width=w, replica=r).values)
    assert np.all(np.isnan(ds["loss_train"].sel(width=4, replica=1).values))


def test_cli_reports_a_damaged_file_in_one_line(files, tmp_path, capsys):
    bad = tmp_path / "limit.nc"
    bad.write_bytes(files["nc"].read_bytes()[:1000])
    assert main(["show", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mfpde: error:") and "limit.nc" in err and "\n" not in err
    assert main(["compare", str(files["nc"]), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mfpde: error:") and "limit.nc" in err and "\n" not in err

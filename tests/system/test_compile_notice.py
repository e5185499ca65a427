"""A first run says that the kernels compile (issue 15, "first run": 1–3 minutes of silence)."""
from __future__ import annotations

import io

import json
import time

import pytest

from mfpde import _jit
from mfpde import cli
from mfpde.cli import _compile_notice


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_cache_is_warm_only_when_it_holds_compiled_kernels(tmp_path):
    assert not _jit.cache_is_warm(str(tmp_path / "absent"))
    assert not _jit.cache_is_warm(str(tmp_path))
    (tmp_path / "mfpde_x").mkdir()
    (tmp_path / "mfpde_x" / "kernels.rhs-12.py311.nbi").write_bytes(b"index")
    assert _jit.cache_is_warm(str(tmp_path))


def test_a_cold_cache_is_announced_on_a_terminal_only(monkeypatch, tmp_path):
    monkeypatch.setattr(_jit, "CACHE_DIR", str(tmp_path / ".numba-cache" / "0123abcd"))   # no record yet
    monkeypatch.setattr(_jit, "cache_is_warm", lambda cache_dir=None: False)
    term, pipe = _Terminal(), io.StringIO()
    assert _compile_notice(term) is True
    assert term.getvalue().startswith("mfpde: compiling the Numba kernels now") and term.getvalue().count("\n") == 1
    assert f"about {cli.EXPECTED_COMPILE_S} s" in term.getvalue()      # no measurement here: the constant
    assert _compile_notice(pipe) is False and pipe.getvalue() == ""     # off a terminal: silent (logs, tests)
    monkeypatch.setattr(_jit, "cache_is_warm", lambda cache_dir=None: True)
    term = _Terminal()
    assert _compile_notice(term) is False and term.getvalue() == ""


@pytest.fixture
def cold_cache(monkeypatch, tmp_path):
    """A cold cache in the default layout <repo>/.numba-cache/<hash>/ under tmp_path."""
    monkeypatch.setattr(_jit, "CACHE", True)
    monkeypatch.setattr(_jit, "CACHE_DIR", str(tmp_path / ".numba-cache" / "0123abcd"))
    monkeypatch.setattr(_jit, "cache_is_warm", lambda cache_dir=None: False)
    return tmp_path / ".numba-cache" / cli.COMPILE_RECORD


def test_the_notice_gives_this_machines_last_measurement_per_command(cold_cache):
    cli._record_compile_seconds("solve", 12.34)
    assert json.loads(cold_cache.read_text()) == {"solve": 12.3}        # beside the per-version folders
    term = _Terminal()
    assert _compile_notice(term, command="solve")
    assert "about 12 s, as measured here last time" in term.getvalue() and term.getvalue().count("\n") == 1
    term = _Terminal()
    assert _compile_notice(term, command="sgd")                        # sgd has no measurement yet
    assert f"about {cli.EXPECTED_COMPILE_S} s" in term.getvalue()
    cold_cache.write_text("not json")                                  # a damaged record is no record
    assert cli._recorded_compile_seconds("solve") is None


def test_an_explicit_cache_dir_keeps_the_record_inside(monkeypatch, tmp_path):
    monkeypatch.setattr(_jit, "CACHE", True)
    monkeypatch.setattr(_jit, "CACHE_DIR", str(tmp_path / "nbc"))
    assert cli._compile_record() == tmp_path / "nbc" / cli.COMPILE_RECORD
    monkeypatch.setattr(_jit, "CACHE", False)
    assert cli._compile_record() is None


def test_a_cold_run_records_the_time_numba_spent_compiling(cold_cache):
    import numba

    def f(x):
        return x * 2.0 + 1.0

    t0 = time.perf_counter()
    with cli._CompileTimer("sgd"):
        assert numba.njit(cache=False)(f)(1.0) == 3.0                 # a fresh function: one compile
    wall = time.perf_counter() - t0
    seconds = json.loads(cold_cache.read_text())["sgd"]
    assert 0.0 <= seconds <= round(wall, 1) + 0.05                     # a part of the block, rounded to 0.1 s


def test_a_warm_run_records_nothing(cold_cache, monkeypatch):
    import numba

    monkeypatch.setattr(_jit, "cache_is_warm", lambda cache_dir=None: True)
    with cli._CompileTimer("solve"):
        numba.njit(cache=False)(lambda x: x + 1.0)(1.0)
    assert not cold_cache.exists()


def test_solve_decides_cold_before_building_the_configuration(cold_cache, monkeypatch, tmp_path):
    """Building a configuration caches a first small kernel (activations' placeholder); a cold
    cache must still be announced, so the question is asked before the configuration is built."""
    from tiny import tiny_toml

    import mfpde
    from mfpde import api

    built = []

    def load(*a, **k):   # as building a configuration does, cache a kernel: the cache turns warm
        built.append(True)
        return api.load(*a, **k)

    monkeypatch.setattr(mfpde, "load", load, raising=False)
    monkeypatch.setattr(_jit, "cache_is_warm", lambda cache_dir=None: bool(built))
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_toml("cold_notice"), encoding="utf-8")
    term = _Terminal()
    monkeypatch.setattr(cli.sys, "stderr", term)
    assert cli.main(["solve", str(cfg), "-o", str(tmp_path / "o.nc"), "--no-progress"]) == 0
    assert term.getvalue().startswith("mfpde: compiling the Numba kernels now")

"""A first run says that the kernels compile (issue 15, "first run": 1–3 minutes of silence)."""
from __future__ import annotations

import io

from mfpde import _jit
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


def test_a_cold_cache_is_announced_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(_jit, "cache_is_warm", lambda cache_dir=None: False)
    term, pipe = _Terminal(), io.StringIO()
    assert _compile_notice(term) is True
    assert term.getvalue().startswith("mfpde: compiling the Numba kernels") and term.getvalue().count("\n") == 1
    assert _compile_notice(pipe) is False and pipe.getvalue() == ""     # off a terminal: silent (logs, tests)
    monkeypatch.setattr(_jit, "cache_is_warm", lambda cache_dir=None: True)
    term = _Terminal()
    assert _compile_notice(term) is False and term.getvalue() == ""

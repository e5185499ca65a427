"""docs/tutorial.md runs: every ```bash and ```python block, in order, in one empty folder (bash
through ``bash -euo pipefail`` with this interpreter's ``mfpde`` first on PATH, python through
exec in one namespace).  A block that fails fails the test, naming the block and its output."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```$", re.S | re.M)

pytestmark = pytest.mark.slow


def blocks() -> list[tuple[str, str, int]]:
    """(language, code, first line number) of every executed block, in order."""
    text = TUTORIAL.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2) for m in BLOCK.finditer(text)]


def test_the_tutorial_has_every_step():
    code = "\n".join(c for _, c, _ in blocks())
    langs = {lang for lang, _, _ in blocks()}
    assert langs == {"bash", "python"}
    for step in ("mfpde solve", "mfpde refine", "mfpde sgd", "mfpde compare", "mfpde plot", "--set",
                 "mfpde.solve(", "mfpde.train("):
        assert step in code, step


def test_every_block_of_the_tutorial_runs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")   # the plot extra (in the dev extras that CI installs)
    mfpde_bin = Path(sys.executable).parent
    assert (mfpde_bin / "mfpde").exists(), f"no mfpde next to {sys.executable}"
    env = {**os.environ, "PATH": f"{mfpde_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__tutorial__"}
    stderr = []
    for lang, code, line in blocks():
        if lang == "bash":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (f"docs/tutorial.md:{line}: bash block exited {done.returncode}\n"
                                          f"{code}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
            stderr.append(done.stderr)
        else:
            try:
                exec(compile(code, f"docs/tutorial.md:{line}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"docs/tutorial.md:{line}: python block raised {exc!r}\n{code}") from exc
    assert "m_2 = 0.7 has no effect on the limit" in "".join(stderr)   # what section 6 says mfpde warns
    for name in ("tutorial.nc", "tutorial_refine.nc", "runs.h5", "compare.nc", "m2.nc"):
        assert (tmp_path / name).is_file(), name
    assert {p.name for p in (tmp_path / "figures").iterdir()} >= {"plot_loss.pdf", "plot_error_width.pdf"}

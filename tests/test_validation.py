"""The validation studies (validation/, docs/validation.md) at their quick sizes.

Each study asserts the criteria stated in its module docstring; in quick mode every rate band
is widened by twice the replica-noise standard error of the fitted slope (computed from the
measured per-width standard errors, so fewer replicas give a wider band), and the checks that
are exact (frozen layers, frozen limit) stay exact.
"""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from validation import STUDIES, run_studies  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STUDIES))
def test_study_meets_its_criteria_at_quick_sizes(name, tmp_path):
    if name == "digits":
        pytest.importorskip("sklearn")
    res = run_studies([name], quick=True, out=tmp_path, say=lambda *a: None)[name]
    failed = [c for c in res["checks"] if not c["passed"]]
    assert res["status"] == "completed" and res["checks"] and not failed, json.dumps(failed, indent=1)
    summary = json.loads((tmp_path / f"{name}.json").read_text())
    assert summary["passed"] and summary["mode"] == "quick"
    assert all(Path(f).exists() for f in res["figures"])


def test_unknown_study_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown study 'nope'"):
        run_studies(["nope"], quick=True, out=tmp_path)


def test_digits_without_scikit_learn_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    from validation import s7_digits

    with pytest.raises(ImportError, match="needs scikit-learn"):
        s7_digits.digits_data(tmp_path)


def test_cli_validate_subcommand_reaches_the_runner(capsys):
    from mfpde.cli import main

    assert main(["validate", "nope", "--quick"]) == 2
    assert "unknown study" in capsys.readouterr().err

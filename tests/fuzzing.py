"""Hypothesis budgets of the test suite: derandomized in ``make test``, randomized in ``make fuzz``.

``make test`` (what CI runs) must be reproducible: every hypothesis test runs derandomized
(a fixed seed derived from the test, no example database), at the budget given as ``ci``.
``make fuzz`` sets ``MFPDE_FUZZ=1``: the same tests then draw fresh random examples (the
seed is printed by ``make fuzz`` and can be passed back with ``FUZZ_SEED=…``) at the larger
``fuzz`` budget, times ``MFPDE_FUZZ_SCALE`` (default 1).  Tests take their settings from
:func:`fuzz_settings` only; ``tests/test_fuzz.py`` checks that no test file sets
``derandomize`` or ``max_examples`` by itself.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ = os.environ.get("MFPDE_FUZZ", "0") not in ("", "0")
SCALE = float(os.environ.get("MFPDE_FUZZ_SCALE", "1") or 1)

settings.register_profile("mfpde-ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("mfpde-fuzz", derandomize=False, database=None, deadline=None, print_blob=True)
settings.load_profile("mfpde-fuzz" if FUZZ else "mfpde-ci")


def budget(ci: int, fuzz: int | None = None) -> int:
    """Number of examples: ``ci`` in make test; ``fuzz`` (default 10 × ci) × scale in make fuzz."""
    if not FUZZ:
        return ci
    return max(1, int((10 * ci if fuzz is None else fuzz) * SCALE))


def fuzz_settings(ci: int, fuzz: int | None = None, *, all_health_checks_off: bool = False) -> settings:
    """The settings of one hypothesis test (derandomized unless ``make fuzz``)."""
    suppress = list(HealthCheck) if all_health_checks_off else [HealthCheck.too_slow]
    return settings(max_examples=budget(ci, fuzz), derandomize=not FUZZ, database=None, deadline=None,
                    suppress_health_check=suppress)

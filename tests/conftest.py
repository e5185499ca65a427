"""Shared test set-up: strict floating-point errors and seeded RNGs."""
import numpy as np
import pytest

import fuzzing  # noqa: F401  - loads the hypothesis profile (derandomized unless make fuzz)


@pytest.fixture(autouse=True)
def _strict_numpy():
    old = np.seterr(all="raise", under="ignore")
    yield
    np.seterr(**old)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)

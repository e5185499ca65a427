"""mfpde: the mean-field limit of wide neural networks trained by SGD, solved on quadrature rules."""
from __future__ import annotations

__version__ = "0.1.0"

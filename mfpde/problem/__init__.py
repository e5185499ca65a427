"""Problem room: what a user describes — network shape, index-space rules and initial
functions, data laws, losses, schedules — validated from TOML (``config``).

Imports only :mod:`mfpde.errors`, :mod:`mfpde.checks` and :mod:`mfpde._jit`.
"""
from mfpde.problem.model import Embedding, Model, Problem, Schedules

__all__ = ["Embedding", "Model", "Problem", "Schedules"]

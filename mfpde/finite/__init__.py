"""Finite room: finite networks — the same System at sampled nodes with weights 1/n, trained
by mean-field SGD (``sgd``), ensembles of widths × replicas into a run store (``ensemble``)
and the tracer coupling (``coupling``).

Imports the Problem, System, Stepper and Store rooms.
"""
from mfpde.finite.sgd import MODES, FiniteRun, check_arguments, network_problem, sgd_steps, train

__all__ = ["MODES", "FiniteRun", "check_arguments", "network_problem", "sgd_steps", "train"]

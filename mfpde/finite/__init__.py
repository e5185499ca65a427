"""Finite room: finite networks — the same System at sampled nodes with weights 1/n
(``network``), trained by mean-field SGD (``sgd``), ensembles of widths × replicas into a
run store (``ensemble``) and the tracer coupling (``coupling``).

Imports the Problem, System, Stepper and Store rooms.
"""
from mfpde.finite.network import (NoiseLaw, initial_network_state, network_noise, network_problem, network_statistics,
                                  run_seed, sample_index_law)
from mfpde.finite.sgd import MODES, FiniteRun, TrainOptions, check_arguments, sgd_steps, train

__all__ = ["MODES", "FiniteRun", "NoiseLaw", "TrainOptions", "check_arguments", "initial_network_state",
           "network_noise", "network_problem", "network_statistics", "run_seed", "sample_index_law", "sgd_steps",
           "train"]

"""System room: the discretized limit system — one flat state (``layout``), compiled
forward/backward/drift kernels (``kernels``), the analytic JVP (``jvp``), a numpy reference
(``System.rhs_reference``), stiffness estimates and the weighted laws of the parameters.

Imports the Problem room only.
"""
from mfpde.system.system import System

__all__ = ["System"]

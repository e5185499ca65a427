"""Time steppers of mfpde (installed as ``mfpde.solvers``)."""

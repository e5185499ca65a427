"""mfpde benchmarks (kept apart from the package and the tests): ``python -m benchmarks``.

``benchmarks.rhs`` — RHS throughput as a fraction of numpy GEMM throughput;
``benchmarks.loop`` — the compiled RK4 loop against Python loops.  Every number is a ratio
of timings interleaved in the same run (see ``benchmarks.common``); docs/benchmarks.md
explains what is measured and why.
"""
from benchmarks.common import environment, interleaved

__all__ = ["environment", "interleaved"]

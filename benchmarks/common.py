"""Shared pieces of the benchmarks: interleaved timing and the environment record.

The benchmark machine may be shared, so a lone absolute time means little.  Every benchmark
therefore times a kernel and its baseline *in the same loop*, alternating A, B, A, B, … (the
order rotates each round so neither always runs first), and reports the median of the
per-round ratios, which both sides measured under the same load.  ``environment()`` records
what actually ran: the BLAS libraries (threadpoolctl), the Numba threading layer and thread
counts, the CPU and the SIMD width Numba compiles for, and the thread-related environment
variables.  ``limit_threads`` sets Numba, BLAS (threadpoolctl) and PyTorch to one thread count;
``optional_torch`` imports PyTorch if the ``bench`` extra is installed.  Imports numpy, numba,
threadpoolctl (PyTorch only through ``optional_torch``).
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import time
from typing import Callable

import numpy as np

ENV_VARS = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
            "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MKL_NUM_THREADS")


def calibrate(fn: Callable[[int], object], target: float) -> int:
    """Repetitions n for which one call ``fn(n)`` lasts about ``target`` seconds.

    Grows n until a call lasts target/8 (so fixed per-call costs do not fool the estimate),
    then scales.
    """
    fn(1)                                  # warm (compile, caches, first-touch)
    n = 1
    while True:
        t0 = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t0
        if dt >= target / 8 or n >= 1_000_000:
            return max(1, min(1_000_000, math.ceil(n * target / max(dt, 1e-9))))
        n *= 4


def interleaved(fns: dict[str, Callable[[int], object]], repeats: int, target: float,
                numbers_out: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Seconds per repetition of each function, ``repeats`` samples each, taken round-robin.

    ``fn(n)`` performs n repetitions of the work being timed (a Python loop, or a loop inside
    compiled code); n is calibrated so a sample lasts about ``target`` seconds.  Round r
    starts at function r mod k, so load changes hit every function alike and none is always
    first.  Sample = elapsed / n.  ``numbers_out``, if given, receives the calibrated n per function.
    """
    names = list(fns)
    numbers = {k: calibrate(fns[k], target) for k in names}
    if numbers_out is not None:
        numbers_out.update(numbers)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for j in range(len(names)):
            k = names[(r + j) % len(names)]
            n = numbers[k]
            t0 = time.perf_counter()
            fns[k](n)
            out[k].append((time.perf_counter() - t0) / n)
    return out


def repeat(fn: Callable[[], object]) -> Callable[[int], None]:
    """``fn`` as an n-repetition Python loop, for :func:`interleaved`."""
    def run(n: int) -> None:
        for _ in range(n):
            fn()
    return run


def median_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num[r] / den[r] (paired samples from the same round)."""
    return float(np.median(np.asarray(num) / np.asarray(den)))


def spread(num: list[float], den: list[float]) -> tuple[float, float]:
    """Interquartile range of the per-round ratios num[r] / den[r]."""
    q = np.percentile(np.asarray(num) / np.asarray(den), [25, 75])
    return float(q[0]), float(q[1])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas_role(path: str) -> str:
    if "numpy" in path:
        return "numpy (GEMM baseline)"
    if "scipy" in path:
        return "scipy (Numba's np.dot in the kernels)"
    return "other"


def blas_info() -> list[dict]:
    """The BLAS/OpenMP libraries loaded in this process, as threadpoolctl sees them."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads", "threading_layer")
    rows = []
    for lib in threadpool_info():
        row = {k: lib.get(k) for k in keep if k in lib}
        row["file"] = os.path.basename(lib.get("filepath", ""))
        if lib.get("user_api") == "blas":
            row["role"] = _blas_role(lib.get("filepath", ""))
        rows.append(row)
    return rows


# CPU names (LLVM's, as NUMBA_CPU_NAME takes them) whose code may use AVX-512, and those limited to AVX2
_AVX512_CPUS = ("skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client", "icelake-server",
                "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "knl", "knm",
                "znver4", "znver5", "x86-64-v4")
_AVX2_CPUS = ("haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake", "znver1", "znver2",
              "znver3", "x86-64-v3")


def simd() -> dict:
    """The CPU Numba compiles for and its widest vector instructions.

    ``host_cpu``/``host_simd``: what LLVM detects on this machine; ``numba_cpu_name``: the
    target Numba uses (``NUMBA_CPU_NAME``, e.g. ``haswell`` to produce AVX2 code on an AVX-512
    machine, else the host CPU); ``simd``: ``"AVX-512"``, ``"AVX2"`` or ``"SSE"`` for that
    target (from ``NUMBA_CPU_FEATURES`` when set, else from the CPU name; ``"unknown"`` for a
    name not in the tables above).
    """
    import numba
    from llvmlite import binding as ll

    try:
        feats = ll.get_host_cpu_features()
        host_feats = {k for k in ("avx512f", "avx2", "fma") if feats.get(k, False)}
    except RuntimeError:                     # some platforms cannot report features
        host_feats = set()
    host_name = ll.get_host_cpu_name()
    width = lambda f: "AVX-512" if "avx512f" in f else "AVX2" if "avx2" in f else "SSE"
    name = numba.config.CPU_NAME or os.environ.get("NUMBA_CPU_NAME") or ""
    features = numba.config.CPU_FEATURES or os.environ.get("NUMBA_CPU_FEATURES") or ""
    if not name or name == "host":
        target, target_simd = host_name, width(host_feats)
    elif features:
        on = {f[1:] for f in features.split(",") if f.startswith("+")}
        target, target_simd = name, width(on)
    else:
        target = name
        target_simd = "AVX-512" if name in _AVX512_CPUS else "AVX2" if name in _AVX2_CPUS else "unknown"
    from mfpde import _jit

    ours = _jit.VECTOR_FEATURES is not None and features == _jit.VECTOR_FEATURES
    return {"host_cpu": host_name, "host_simd": width(host_feats), "numba_cpu_name": target, "simd": target_simd,
            "numba_cpu_features": features or None,
            "vector_width": ("512 (mfpde: host features, -prefer-256-bit)" if ours else
                             "LLVM's choice for the target" + (" (MFPDE_VECTOR_WIDTH=256)"
                                                               if os.environ.get("MFPDE_VECTOR_WIDTH") == "256" else ""))}


TORCH_PIN = "torch==2.13.0"
TORCH_MISSING = ("torch is not installed: the PyTorch comparisons are skipped (`make bench` installs the "
                 f"bench extra, or: .venv/bin/python -m pip install {TORCH_PIN})")


def optional_torch():
    """The ``torch`` module if the ``bench`` extra is installed, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


@contextlib.contextmanager
def limit_threads(n: int, torch=None):
    """Run the block with n threads in Numba, in every BLAS/OpenMP library (threadpoolctl) and,
    if given, in PyTorch; restore the previous counts afterwards.  n is capped at
    ``NUMBA_NUM_THREADS`` (Numba cannot start more threads than it was configured with)."""
    import numba
    from threadpoolctl import threadpool_limits

    import scipy.linalg  # noqa: F401  (load the BLAS Numba uses, so the limit reaches it)
    n = max(1, min(int(n), int(numba.config.NUMBA_NUM_THREADS)))
    old_numba = numba.get_num_threads()
    old_torch = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        numba.set_num_threads(n)
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield n
        finally:
            numba.set_num_threads(old_numba)
            if torch is not None:
                torch.set_num_threads(old_torch)


def env_snapshot() -> dict:
    """The thread-related environment variables as the user set them (call before importing mfpde,
    which sets ``OMP_WAIT_POLICY=passive`` unless it is set)."""
    return {k: os.environ.get(k) for k in ENV_VARS}


def environment(env_before: dict | None = None) -> dict:
    """What ran: versions, CPU, load, BLAS libraries, Numba threading (call after a parallel kernel ran)."""
    import numba
    import scipy

    try:
        layer = numba.threading_layer()
    except ValueError:                      # no parallel kernel has run yet
        layer = "not initialised"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        **simd(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "numba_threading_layer": layer,
        "numba_num_threads": int(numba.config.NUMBA_NUM_THREADS),
        "numba_threads_in_use": int(numba.get_num_threads()),
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "env_before_import": env_before,
        "blas": blas_info(),
        "torch": _torch_info(),
    }


def _torch_info() -> dict | None:
    """PyTorch's version and threads if it was imported (the bench extra), else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return {"version": torch.__version__, "num_threads": torch.get_num_threads(),
            "parallel": torch.__config__.parallel_info().splitlines()[-1].strip()}


def busy_note(env: dict) -> str | None:
    """A warning when threads are used on a machine that other processes already keep busy."""
    load = (env.get("loadavg") or [0.0])[0]
    cpus = env.get("cpus_usable") or 1
    blas = max([b.get("num_threads") or 1 for b in env["blas"] if b.get("user_api") == "blas"] or [1])
    if load > cpus - 0.5 and (env["numba_threads_in_use"] > 1 or blas > 1):
        return (f"note: load average {load:.1f} on {cpus} CPUs while Numba uses {env['numba_threads_in_use']} and BLAS "
                f"{blas} threads: a parallel call then waits for a thread whose core is taken (and OpenBLAS's "
                f"workers spin), so results depend on the other load (docs/benchmarks.md); compare --threads 1")
    return None


def describe_environment(env: dict) -> str:
    """A few lines for the terminal."""
    lines = [f"python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, numba {env['numba']}",
             f"cpu: {env['cpu']} ({env['cpus_usable']} usable of {env['cpu_count']}); "
             f"load average {' '.join(f'{x:.2f}' for x in env['loadavg'] or [])}",
             f"simd: Numba compiles for {env['numba_cpu_name']} ({env['simd']}); host {env['host_cpu']} "
             f"({env['host_simd']}); vector width {env.get('vector_width')}"
             + (f", NUMBA_CPU_FEATURES={env['numba_cpu_features']}"
                if env.get("numba_cpu_features") and not str(env.get("vector_width", "")).startswith("512") else ""),
             f"numba: threading layer {env['numba_threading_layer']}, NUMBA_NUM_THREADS = {env['numba_num_threads']}"
             f" (in use {env['numba_threads_in_use']})"]
    for b in env["blas"]:
        if b.get("user_api") == "blas":
            lines.append(f"blas: {b.get('internal_api')} {b.get('version')} {b.get('architecture')} "
                         f"{b.get('num_threads')} threads ({b.get('threading_layer')}) — {b.get('role')}")
        else:
            lines.append(f"{b.get('user_api')}: {b.get('prefix')} {b.get('num_threads')} threads")
    if env.get("torch"):
        t = env["torch"]
        lines.append(f"torch: {t['version']}, {t['num_threads']} threads ({t['parallel']})")
    before = env.get("env_before_import") or {}
    set_vars = {k: v for k, v in env["env"].items() if v is not None}
    lines.append("env: " + (", ".join(f"{k}={v}" + (" (set by mfpde)" if before and before.get(k) is None else "")
                                      for k, v in set_vars.items()) or "no thread variables set"))
    return "\n".join(lines)


def jit_cache() -> dict:
    """Numba's on-disk cache as mfpde uses it (call before the kernels are first loaded).

    mfpde keys the cache directory on a hash of every source file of ``mfpde/`` and
    ``solvers/`` plus the Numba version (``<repo>/.numba-cache/<hash>/``), so an entry can no
    longer run code older than the sources: a changed file means a new, empty directory and
    one compile.  Reported: whether caching is on, the directory and its hash key, and how
    many index files it held before this run (0: this run compiles).
    """
    from mfpde import _jit

    d = getattr(_jit, "CACHE_DIR", "") or ""
    enabled = bool(getattr(_jit, "CACHE", False)) and bool(d)
    count = 0
    if enabled and os.path.isdir(d):
        for _, _, files in os.walk(d):
            count += sum(f.endswith(".nbi") for f in files)
    root = os.path.dirname(os.path.dirname(os.path.abspath(_jit.__file__)))
    shown = os.path.relpath(d, root) if d.startswith(root + os.sep) else d
    return {"enabled": enabled, "dir": shown, "key": os.path.basename(d.rstrip(os.sep)) if enabled else None,
            "index_files_before": count}


def describe_jit_cache(info: dict, fresh: bool) -> str:
    if fresh or not info.get("enabled"):
        return "numba cache: disabled" + (" (--fresh-jit: compiled in this run)" if fresh else "")
    state = (f"warm ({info['index_files_before']} index files)" if info["index_files_before"]
             else "empty before this run (compiled here)")
    return f"numba cache: {info['dir']} (source hash {info['key']}), {state}"


def git_state(repo: str) -> dict:
    """The commit and the modified/untracked files of the working tree that ran."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(("git", "-C", repo) + a, capture_output=True, text=True, timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "dirty": [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:]]}


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with right-aligned columns (markdown-compatible)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])

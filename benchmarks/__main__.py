"""``python -m benchmarks [--quick] [--json OUT.json]`` (``make bench``): run and print the three benchmarks."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repeats and shorter samples (< 30 s)")
    p.add_argument("--json", metavar="OUT.json", help="write every number and the environment to this file")
    p.add_argument("--only", choices=("rhs", "loop", "engine"), help="run one benchmark")
    p.add_argument("--rule", choices=("monte_carlo", "gauss_hermite"), default="monte_carlo",
                   help="index-space rules of the RHS benchmark (timing does not depend on it)")
    p.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")),
                   help="comma-separated Q of the RHS benchmark (default 32,256,1024,2048; --quick: 32,256,1024)")
    p.add_argument("--widths", type=lambda s: tuple(int(x) for x in s.split(",")),
                   help="comma-separated widths n of the SGD engine benchmark (default 256,1024,4096; --quick: 256,1024)")
    p.add_argument("--threads", type=int,
                   help="limit Numba and BLAS threads to N at run time (default: leave as configured)")
    p.add_argument("--fresh-jit", action="store_true",
                   help="compile the kernels afresh (MFPDE_JIT_CACHE=0, ~15 s more) instead of loading Numba's cache")
    args = p.parse_args(argv)
    if args.fresh_jit:
        os.environ["MFPDE_JIT_CACHE"] = "0"      # read when mfpde._jit is first imported (below)

    from benchmarks import common
    env_before = common.env_snapshot()           # before mfpde sets OMP_WAIT_POLICY
    from benchmarks import engine, loop, rhs

    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    if args.threads:
        import numba
        from threadpoolctl import threadpool_limits

        import scipy.linalg  # noqa: F401  (load the BLAS Numba uses, so the limit reaches it)
        numba.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    start = time.perf_counter()
    result: dict = {"quick": args.quick, "threads_limit": args.threads, "fresh_jit": args.fresh_jit,
                    "command": " ".join(["python -m benchmarks"] + (argv if argv is not None else sys.argv[1:])),
                    "loadavg_start": list(os.getloadavg())}
    result["jit_cache"] = common.jit_cache()
    result["git"] = common.git_state(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    log("warming up (first Numba compile of a fresh checkout takes ~15 s) ...")
    if args.only in (None, "rhs"):
        result["rhs"] = rhs.run(args.quick, args.sizes, args.rule, log=log)
    if args.only in (None, "loop"):
        result["loop"] = loop.run(args.quick, log=log)
    if args.only in (None, "engine"):
        result["engine"] = engine.run(args.quick, args.widths, log=log)
    result["environment"] = common.environment(env_before)
    result["wall_s"] = time.perf_counter() - start

    print(common.describe_environment(result["environment"]))
    note = common.busy_note(result["environment"])
    if note:
        print(note)
    print(common.describe_jit_cache(result["jit_cache"], args.fresh_jit))
    g = result["git"]
    print(f"source: commit {g['commit'] or '?'}" + (f", modified: {', '.join(g['dirty'])}" if g["dirty"] else ", clean"))
    if "rhs" in result:
        r0 = result["rhs"][0]
        print(f"\n1. RHS throughput: two tanh layers, d = {r0['d']}, M = {r0['M']}, K = {r0['K']}, "
              f"{r0['rule']} rules; efficiency = RHS GFLOP/s / GEMM GFLOP/s ([M,Q]x[Q,Q], numpy), "
              f"median of {r0['repeats']} interleaved rounds; last four columns: share of the RHS time")
        print(common.table(*rhs.format_rows(result["rhs"])))
    if "loop" in result:
        r0 = result["loop"][0]
        print(f"\n2. RK4 time per step, ratio to the compiled loop (d = 1 teacher, M = {r0['M']}, "
              f"dt = {r0['dt']}, median of {r0['repeats']} interleaved rounds)")
        print(common.table(*loop.format_rows(result["loop"])))
    if "engine" in result:
        r0 = result["engine"][0]
        print(f"\n3a. SGD engine (mfpde.finite.sgd_steps) time per step over the dense products one step needs: "
              f"dense = numpy matmul, dense_blas = the same products through Numba's np.dot in compiled code; "
              f"two tanh layers of width n, d = {r0['d']}, K = {r0['K']}, online batches of B; median of "
              f"{r0['repeats']} interleaved rounds; last two columns: shares of the engine step")
        print(common.table(*engine.format_rows(result["engine"])))
        if any(r["B"] == 1 for r in result["engine"]):
            print("\n3b. B = 1: share of the rank-1 product A₁ᵀP₂ in the dense time, and the per-step overhead "
                  "(engine − dense products) over one forward-backward written in plain numpy")
            print(common.table(*engine.format_overhead_rows(result["engine"])))
    print(f"\n(wall time {result['wall_s']:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m benchmarks [--quick] [--json OUT.json] [--only NAMES]`` (``make bench``): run and print the benchmarks.

rhs, loop, engine (against dense products), torch (the SGD engine against PyTorch), shapes (the
users' problem shapes against the same limit in PyTorch) and phi (the φ/φ' pass against a
streaming multiply–add); see docs/benchmarks.md.  Without PyTorch (the ``bench`` extra) the
torch and shapes benchmarks print one line saying so and the rest runs."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

BENCHMARKS = ("rhs", "loop", "engine", "torch", "shapes", "phi")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in names if x not in BENCHMARKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown benchmark {', '.join(bad) or repr(text)}; "
                                         f"choose from {', '.join(BENCHMARKS)} (comma-separated)")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repeats and shorter samples (< 30 s)")
    p.add_argument("--json", metavar="OUT.json", help="write every number and the environment to this file")
    p.add_argument("--only", type=_names, metavar="NAMES",
                   help=f"comma-separated benchmarks to run, from {', '.join(BENCHMARKS)} (default: all)")
    p.add_argument("--rule", choices=("monte_carlo", "gauss_hermite"), default="monte_carlo",
                   help="index-space rules of the RHS benchmark (timing does not depend on it)")
    p.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")),
                   help="comma-separated Q of the RHS benchmark (default 32,256,1024,2048; --quick: 32,256,1024)")
    p.add_argument("--widths", type=lambda s: tuple(int(x) for x in s.split(",")),
                   help="comma-separated widths n of the SGD engine benchmark (default 256,1024,4096; --quick: 256,1024)")
    p.add_argument("--threads", type=int,
                   help="limit Numba and BLAS threads to N at run time (default: leave as configured); the "
                        "PyTorch comparisons (torch, shapes) then run at N threads only instead of 1 and 2")
    p.add_argument("--fresh-jit", action="store_true",
                   help="compile the kernels afresh (MFPDE_JIT_CACHE=0, ~15 s more) instead of loading Numba's cache")
    args = p.parse_args(argv)
    if args.fresh_jit:
        os.environ["MFPDE_JIT_CACHE"] = "0"      # read when mfpde._jit is first imported (below)

    from benchmarks import common
    env_before = common.env_snapshot()           # before mfpde sets OMP_WAIT_POLICY
    from benchmarks import engine, loop, phi, rhs, shapes

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
    only = args.only or BENCHMARKS
    torch_threads = (args.threads,) if args.threads else None
    has_torch = common.optional_torch() is not None
    result["torch_installed"] = has_torch
    cpu = common.simd()
    log(f"cpu: {common._cpu_model()}; Numba compiles for {cpu['numba_cpu_name']} ({cpu['simd']})")
    log("warming up (first Numba compile of a fresh checkout takes ~15 s) ...")
    if "rhs" in only:
        result["rhs"] = rhs.run(args.quick, args.sizes, args.rule, log=log)
    if "loop" in only:
        result["loop"] = loop.run(args.quick, log=log)
    if "engine" in only:
        result["engine"] = engine.run(args.quick, args.widths, log=log)
    if "torch" in only and has_torch:
        result["torch"] = engine.run_torch(args.quick, torch_threads, log=log)
    if "shapes" in only and has_torch:
        result["shapes"] = shapes.run(args.quick, torch_threads, log=log)
    if "phi" in only:
        result["phi"] = phi.run(args.quick, log=log) if phi.available() else None
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
    if not has_torch and ("torch" in only or "shapes" in only):
        print(f"\n{common.TORCH_MISSING}")
    if "torch" in only and has_torch:
        print(f"\n3c. SGD engine against the same network's SGD step in PyTorch (width {engine.TORCH_WIDTH}, full "
              f"batch of {engine.TORCH_BATCH} fixed points, d = {engine.D}, two tanh layers, float64; median of "
              "interleaved rounds; one step of each checked to agree first)")
        print(common.table(*engine.format_torch_rows(result["torch"])))
    if "shapes" in only and has_torch:
        print(f"\n5. Shapes users solve: mfpde's compiled Euler loop over the same discretized limit in PyTorch "
              f"autograd (tanh, squared loss, dt = {shapes.DT}; each sample n steps from the initial state; "
              f"median of interleaved rounds; check: largest relative drift/state difference, asserted ≤ "
              f"{shapes.RTOL:g} before timing)")
        print(common.table(*shapes.format_rows(result["shapes"])))
    if "phi" in only:
        print("\n6. φ/φ' pass: activations.pair_block over N doubles against a compiled streaming multiply–add "
              "of the same arrays (a = h·c + d, p = h·e), one thread, median of interleaved rounds")
        if result["phi"] is None:
            print("mfpde.problem.activations has no pair_block in this version: skipped")
        else:
            r0 = result["phi"][0]
            print(f"(N = {r0['n']}, {r0['repeats']} rounds)")
            print(common.table(*phi.format_rows(result["phi"])))
    print(f"\n(wall time {result['wall_s']:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

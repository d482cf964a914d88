"""python -m minigpt bench [SUITE ...]: how fast is minigpt, and compared with what?

Suites:
    train      training tokens/s of the shakespeare-char preset, minigpt vs PyTorch CPU
               (same architecture, batch and thread count, timed in the same run), and
               achieved GFLOP/s against this machine's measured BLAS sgemm rate
    sample     sampling tokens/s with and without the KV cache
    kernels    each Numba kernel against its NumPy reference
    tokenizer  BPE encode/decode throughput

With no suite named, `train` and `sample` run; `all` runs every suite.

These machines are shared and noisy, so compare numbers taken in one run (the ratio
lines), not numbers from different runs. Timing lives here, never in the tests.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time

SUITES = {
    "train": "minigpt.bench.train",
    "sample": "minigpt.bench.sample",
    "kernels": "minigpt.bench.kernels",
    "tokenizer": "minigpt.bench.tokenizer",
}
DEFAULT_SUITES = ("train", "sample")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"any of {', '.join(SUITES)} or all (default: {' '.join(DEFAULT_SUITES)})")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed repetitions (train: steps, default 60; sample: whole generations, "
                             "default 3; kernels: best-of repeats, default 7; tokenizer: best-of "
                             "repeats, default 3)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations first (Numba compilation, caches, BLAS threads)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for BLAS, Numba and torch alike (default: what they pick, "
                             "normally one per core)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparisons")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup", action="store_true",
                        help="kernels suite: also time cold vs warm Numba start-up (compiles everything)")


def _pin_threads(args) -> int | None:
    """BLAS reads its thread count when NumPy is first imported, which has happened by now,
    so honouring --threads means running the benchmark again in a fresh process with the
    thread variables set. Returns that process's exit code, or None to go on here."""
    if args.threads is None:
        return None
    wanted = str(args.threads)
    if all(os.environ.get(name) == wanted for name in THREAD_VARIABLES):
        return None  # already the fresh process
    env = dict(os.environ, **{name: wanted for name in THREAD_VARIABLES})
    argv = [sys.executable, "-m", "minigpt", "bench", *args.suites, "--threads", wanted,
            "--seed", str(args.seed)]
    for flag, value in (("--iters", args.iters), ("--warmup", args.warmup)):
        if value is not None:
            argv += [flag, str(value)]
    argv += [flag for flag, on in (("--no-torch", args.no_torch), ("--startup", args.startup)) if on]
    return subprocess.call(argv, env=env)


def seconds(fn) -> float:
    """Wall-clock seconds taken by one call fn(): the one stopwatch every suite uses."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def thread_count(args) -> int:
    """The thread count every library in the comparison is given."""
    import numba

    return args.threads if args.threads is not None else numba.get_num_threads()


def run(args) -> int:
    suites = list(args.suites) or list(DEFAULT_SUITES)
    if "all" in suites:
        suites = list(SUITES)
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        print(f"error: unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)} or all",
              file=sys.stderr)
        return 2
    for name, value, least in (("--iters", args.iters, 1), ("--warmup", args.warmup, 0),
                               ("--threads", args.threads, 1)):
        if value is not None and value < least:
            print(f"error: {name} must be >= {least}, got {value}", file=sys.stderr)
            return 2
    code = _pin_threads(args)
    if code is not None:
        return code

    # With --threads we are the fresh process, whose NUMBA_NUM_THREADS already says it.
    import numba
    import numpy as np

    from minigpt import kernels

    print(f"minigpt bench: numpy {np.__version__}, numba {numba.__version__}, "
          f"backend {kernels.backend()}, {thread_count(args)} thread(s), {os.cpu_count()} CPU(s)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:  # thread pools that spin-wait suffer badly when the cores are shared
        print(f"note: the machine is busy (load average {load:.1f} on {os.cpu_count()} CPUs); "
              f"numbers will be noisy, and multi-threaded ones hit hardest (try --threads 1)")
    failed = 0
    for name in suites:
        print(f"\n== {name} ==")
        module = importlib.import_module(SUITES[name])
        try:
            failed += bool(module.run(args))
        except Exception as err:  # one broken suite (say, data offline) must not hide the rest
            print(f"error: suite {name!r} failed: {type(err).__name__}: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0

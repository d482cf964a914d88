"""python -m minigpt bench [SUITE ...]: how fast is minigpt, and compared with what?

Suites:
    train      training tokens/s, minigpt vs PyTorch CPU, at two model sizes (presets
               shakespeare-char and 6L-384), in every layout of the cores: one process
               with one thread or all of them, and data-parallel processes (minigpt over
               MPI, PyTorch DDP over gloo), all timed in the same run; achieved GFLOP/s
               against this machine's measured BLAS sgemm rate. With --profile, where the
               time of a minigpt step goes (per layer, forward vs backward, optimizer,
               overhead)
    sample     sampling tokens/s with and without the KV cache
    kernels    each Numba kernel against its NumPy reference; the matmul ladder (hand-written
               matmuls) in GFLOP/s against BLAS on the same threads
    tokenizer  BPE encode/decode throughput
    main       the README's main command start to sample (fresh processes), against the same
               recipe as a plain PyTorch loop (minigpt/bench/torch_loop.py); minutes long

With no suite named, `train` and `sample` run; `all` runs every suite.

These machines are shared and noisy, so compare numbers taken in one run (the ratio
lines), not numbers from different runs. Timing lives here, never in the tests.

    python -m minigpt bench --profile --json bench.json

runs everything the README's speed section shows, prints its table, and writes every
number with the machine's description to bench.json.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from minigpt.runtime import THREAD_VARIABLES

SUITES = {
    "train": "minigpt.bench.train",
    "sample": "minigpt.bench.sample",
    "kernels": "minigpt.bench.kernels",
    "tokenizer": "minigpt.bench.tokenizer",
    "main": "minigpt.bench.main_command",
}
DEFAULT_SUITES = ("train", "sample")
TRAIN_PRESETS = ("shakespeare-char", "6L-384")  # minigpt.bench.train.PRESETS (not imported here: --help stays quick)


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
                             "normally one per core); the train suite then uses this many cores")
    parser.add_argument("--presets", nargs="+", choices=TRAIN_PRESETS, default=None,
                        help=f"train suite: the model sizes to time (default: {' '.join(TRAIN_PRESETS)})")
    parser.add_argument("--profile", action="store_true",
                        help="train suite: also profile a minigpt step (per layer, forward vs backward, "
                             "optimizer, overhead) at 1 thread and at all")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write every result, with the machine's description, to this JSON file")
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
    return subprocess.call([sys.executable, "-m", "minigpt", *bench_arguments(args)], env=env)


def bench_arguments(args) -> list[str]:
    """The command line (after `python -m minigpt`) that asks for this benchmark again."""
    argv = ["bench", *args.suites]
    for flag, value in (("--threads", args.threads), ("--iters", args.iters), ("--warmup", args.warmup),
                        ("--json", args.json)):
        if value is not None:
            argv += [flag, str(value)]
    if args.seed != 0:
        argv += ["--seed", str(args.seed)]
    if args.presets:
        argv += ["--presets", *args.presets]
    return argv + [flag for flag, on in (("--no-torch", args.no_torch), ("--startup", args.startup),
                                         ("--profile", args.profile)) if on]


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
    if args.json is not None and not Path(args.json).resolve().parent.is_dir():
        print(f"error: --json {args.json}: the folder {Path(args.json).resolve().parent} does not exist",
              file=sys.stderr)
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
    args.results = {}  # each suite adds its numbers here, for --json and the summary
    machine = describe_machine(args)
    failed = 0
    for name in suites:
        print(f"\n== {name} ==")
        module = importlib.import_module(SUITES[name])
        try:
            failed += bool(module.run(args))
        except Exception as err:  # one broken suite (say, data offline) must not hide the rest
            print(f"error: suite {name!r} failed: {type(err).__name__}: {err}", file=sys.stderr)
            failed += 1
    machine["load_average_after"] = _load_average()
    from minigpt.bench import report

    report.print_summary(args.results, machine)
    if args.json:
        report.write_json(args.json, args.results, machine)
    return 1 if failed else 0


def _load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def describe_machine(args) -> dict:
    """What the numbers were measured on, for the JSON file and the README's table."""
    import numba
    import numpy as np

    from minigpt.runtime import available_cores

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__}
    try:  # torch is not imported here: in this process its OpenMP threads would fight BLAS's
        versions["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        pass
    return {"cpu": cpu, "cores": available_cores(), "platform": platform.platform(), "versions": versions,
            "command": " ".join(["python -m minigpt", *bench_arguments(args)]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "load_average_before": _load_average()}

"""The README's main command end to end, start to sample: minigpt against a plain PyTorch loop.

Each command runs as a fresh process, timed from its start to its exit (imports, data,
training, evaluations, checkpoints and the final sample all count, as they do for a user):

    minigpt              python -m minigpt train --ranks auto          (the README's command as it runs
                                                                        by default: MPI ranks when it can)
    minigpt, 1 process   python -m minigpt train --ranks 1             (one process, the libraries' threads)
    PyTorch              python -m minigpt.bench.torch_loop            (torch's default threads)
    PyTorch, 1 thread    python -m minigpt.bench.torch_loop --threads 1

The PyTorch loop is the same recipe written the usual way (see torch_loop.py). --iters
sets the number of training iterations for every command (default: the recipe's 2000,
about two minutes each, so the suite takes several minutes). With --warmup K the commands
first run K untimed rounds (Numba's cache is filled by then either way: a user's second run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def commands(iters: int | None, out_dir: Path) -> dict[str, list[str]]:
    """name -> the command line of each way to run the recipe on this machine."""
    train = [sys.executable, "-m", "minigpt", "train", "--no-progress"]
    torch_loop = [sys.executable, "-m", "minigpt.bench.torch_loop"]
    limit = [] if iters is None else ["--max-iters", str(iters)]
    # (--ranks auto, not the flag left out: MINIGPT_RANKS, e.g. the tests', must not change the default)
    runs = {"minigpt": [*train, *limit, "--ranks", "auto", "--out-dir", str(out_dir / "minigpt")],
            "minigpt, 1 process": [*train, *limit, "--ranks", "1", "--out-dir", str(out_dir / "minigpt-1")]}
    if _has("torch"):
        runs["PyTorch"] = [*torch_loop, *limit, "--out-dir", str(out_dir / "torch")]
        runs["PyTorch, 1 thread"] = [*torch_loop, *limit, "--threads", "1", "--out-dir", str(out_dir / "torch-1")]
    return runs


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def wall_time(command: list[str]) -> tuple[float, str]:
    """Seconds from starting the command to its exit, and the layout it said it chose ("using
    2 MPI ranks x 1 thread (...)", or "" from the PyTorch loop); its output is shown only if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, next((line for line in done.stdout.splitlines() if line.startswith("using ")), "")


def run(args) -> int:
    rounds = 1 + (args.warmup or 0)
    with tempfile.TemporaryDirectory(prefix="minigpt-bench-main-") as tmp:
        runs = commands(args.iters, Path(tmp))
        if args.no_torch:
            runs = {name: cmd for name, cmd in runs.items() if not name.startswith("PyTorch")}
        print(f"the main command's recipe, {args.iters or 'all its'} iterations, start to sample; "
              f"{len(runs)} command(s), {rounds - 1} untimed round(s) first")
        timed: dict[str, float] = {}
        layouts: dict[str, str] = {}
        for round_ in range(rounds):
            for name, command in runs.items():
                shutil.rmtree(command[command.index("--out-dir") + 1], ignore_errors=True)
                timed[name], layouts[name] = wall_time(command)
                print(f"  {name:24s} {timed[name]:7.1f} s" + ("  (untimed round)" if round_ < rounds - 1 else "")
                      + (f"  {layouts[name]}" if layouts[name] else ""))
    torch_best = min((s for name, s in timed.items() if name.startswith("PyTorch")), default=None)
    for name, s in timed.items():
        ratio = f"  PyTorch's best / this: {torch_best / s:.2f}x" if torch_best and not name.startswith("PyTorch") else ""
        print(f"{name:24s} {s:7.1f} s{ratio}")
    args.results["main"] = {"iters": args.iters, "seconds": timed, "torch_best_seconds": torch_best,
                            "layouts": {name: line for name, line in layouts.items() if line}}
    return 0

"""How `python -m minigpt train` uses the machine's cores: MPI ranks when it can, else one process.

Measured on an idle 2-core machine (README, speed section), the main command from start to
sample took 75 s as two MPI ranks of one thread each and 105 s as one process on two
threads: the matmuls of these small models split badly between threads, while ranks each
own a whole share of the batch and meet once per step to add their gradients
(minigpt/distributed.py). So the command starts its own ranks when it can:

    --ranks auto (the default)   one rank per core this process may use, when mpi4py imports
                                 and an mpiexec is found (beside this Python, where
                                 `pip install mpich` puts it, or on PATH); fewer ranks when
                                 the cores do not divide --batch-size (the most that do);
                                 otherwise one process on the libraries' threads, as before
    --ranks 1                    one process (what notebooks and `train()` from Python get)
    --ranks N                    N ranks; an error, before any work, without mpi4py or
                                 mpiexec, or when N does not divide --batch-size

MINIGPT_RANKS (e.g. MINIGPT_RANKS=1) sets the default instead of auto; the flag wins.

To start N ranks, the command runs itself again as

    mpiexec -n N python -m minigpt train <the same flags>

with one thread per rank (unless OMP_NUM_THREADS or its siblings were set by hand: two
threads per rank on two cores would fight over them), waits, and returns mpiexec's exit
code. A process started by mpiexec never does this: the launcher chose the layout
(several machines included), so `mpiexec -f hosts -n 8 python -m minigpt train` works as it
always did.

Ctrl-C: mpiexec runs in a process group of its own, so a Ctrl-C at the terminal reaches
this process alone, which hands it to mpiexec once; mpiexec passes it to every rank, rank
0's decision stops them all after the same iteration (train.py), rank 0 saves, and the
exit code 130 comes back through mpiexec. A second Ctrl-C makes mpiexec abort at once.
(In the terminal's group mpiexec would get every Ctrl-C twice: from the terminal and
from us.)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from minigpt import distributed, runtime

ENVIRONMENT_DEFAULT = "MINIGPT_RANKS"  # the default of --ranks when the flag is not given


class LayoutError(ValueError):
    """The layout asked for cannot run here (no mpi4py or mpiexec, or the batch does not split)."""


@dataclass(frozen=True)
class Layout:
    """How the command runs: `ranks` processes, and why (said to the user in one line)."""

    ranks: int
    reason: str
    threads: str = ""  # per process, e.g. "1 thread"

    def describe(self) -> str:
        processes = "1 process" if self.ranks == 1 else f"{self.ranks} MPI ranks"
        return f"using {processes} x {self.threads} ({self.reason})"


def add_ranks_argument(parser) -> None:
    parser.add_argument("--ranks", type=parse_ranks, default=None,
                        help=f"auto (the default, or ${ENVIRONMENT_DEFAULT}): one MPI rank per core when mpi4py and "
                             f"mpiexec are installed, else one process; 1: one process; N: N ranks under mpiexec")


# --- the rule: a pure function of the facts --------------------------------------------------


def parse_ranks(text: str) -> str | int:
    """'auto' or a positive number of ranks (the type of --ranks and MINIGPT_RANKS)."""
    if text == "auto":
        return "auto"
    try:
        ranks = int(text)
    except ValueError:
        ranks = 0
    if ranks < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of ranks >= 1, got {text!r}")
    return ranks


def choose_ranks(requested: str | int, cores: int, has_mpi4py: bool, mpiexec: str | None,
                 batch_size: int, asked_by: str = "--ranks") -> Layout:
    """The number of ranks for `requested` ('auto' or N) on a machine with these facts, and why.

    asked_by names where `requested` came from ("--ranks" or "MINIGPT_RANKS"), for the
    messages. Raises LayoutError when an explicit N > 1 cannot run."""
    said = f"{asked_by} {requested}" if asked_by.startswith("-") else f"{asked_by}={requested}"
    if requested == 1:
        return Layout(1, said)
    if requested != "auto":
        missing = ("mpi4py cannot be imported" if not has_mpi4py else
                   "no mpiexec was found beside this Python or on PATH" if mpiexec is None else None)
        if missing:
            raise LayoutError(f"{said} needs MPI, but {missing}: install both with pip install mpi4py mpich "
                              f"(or use --ranks 1 for one process)")
        if batch_size % requested:
            raise LayoutError(f"{said} cannot split batch_size {batch_size} evenly: choose a --batch-size "
                              f"divisible by {requested}, or another number of ranks")
        return Layout(requested, said)
    if not has_mpi4py:
        return Layout(1, "mpi4py is not installed; pip install mpi4py mpich for one rank per core")
    if mpiexec is None:
        return Layout(1, "no mpiexec found; pip install mpich for one rank per core")
    if cores < 2:
        return Layout(1, "one core")
    ranks = max(n for n in range(1, cores + 1) if batch_size % n == 0)
    if ranks == 1:
        return Layout(1, f"batch_size {batch_size} does not split over 2 to {cores} ranks")
    share = "" if ranks == cores else f", batch_size {batch_size} splits over {ranks} of the {cores} cores"
    return Layout(ranks, f"mpi4py and mpiexec found{share}; --ranks 1 for one process")


# --- the facts of this machine ---------------------------------------------------------------


def has_mpi4py() -> bool:
    """Whether mpi4py imports. (Only the package: `from mpi4py import MPI` would start MPI in
    this process, which only the ranks need.)"""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def threads_per_rank(ranks: int, cores: int) -> str:
    """The threads each process gets, in words."""
    if runtime.threads_set_by_hand():
        return "threads as " + ", ".join(f"{name}={os.environ[name]}" for name in runtime.THREAD_VARIABLES
                                         if name in os.environ)
    n = 1 if ranks > 1 else cores  # (one process: Numba and BLAS each default to the cores it may use)
    return "1 thread" if n == 1 else f"{n} threads"


def choose_layout(flag: str | int | None, batch_size: int) -> Layout | None:
    """The layout for this run (flag: --ranks, None when not given), or None when an MPI
    launcher started this process: the launcher chose, and only an explicit --ranks that
    disagrees with it is an error."""
    if distributed.started_by_launcher():
        launched = distributed.launched_ranks()
        size = launched[1] if launched else 1
        if flag not in (None, "auto", size):
            raise LayoutError(f"--ranks {flag}, but mpiexec started {size} rank(s): give one or the other")
        return None
    requested, asked_by = flag, "--ranks"
    if flag is None and ENVIRONMENT_DEFAULT in os.environ:
        try:
            requested, asked_by = parse_ranks(os.environ[ENVIRONMENT_DEFAULT]), ENVIRONMENT_DEFAULT
        except argparse.ArgumentTypeError as err:
            raise LayoutError(f"{ENVIRONMENT_DEFAULT}: {err}") from None
    cores, mpi = runtime.available_cores(), has_mpi4py()
    layout = choose_ranks(requested or "auto", cores, mpi, distributed.mpiexec_path() if mpi else None,
                          batch_size, asked_by)
    return Layout(layout.ranks, layout.reason, threads_per_rank(layout.ranks, cores))


# --- the re-launch -----------------------------------------------------------------------------


def children_environment(environ: dict[str, str]) -> dict[str, str]:
    """The ranks' environment: this one, with one thread each unless thread counts were set by hand."""
    env = dict(environ)
    if not any(name in environ for name in runtime.THREAD_VARIABLES):
        env.update({name: "1" for name in runtime.THREAD_VARIABLES})
    return env


def run_under_mpiexec(ranks: int, train_flags: list[str]) -> int:
    """`mpiexec -n ranks python -m minigpt train train_flags`, waited for; its exit code.

    mpiexec gets a process group of its own and every Ctrl-C (and SIGTERM) this process
    receives, once (see the module docstring). Its stdin is closed: outside the terminal's
    foreground group, reading the terminal would stop it, and training reads nothing."""
    mpiexec = distributed.mpiexec_path()
    command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "minigpt", "train", *train_flags]
    sys.stdout.flush()
    child = subprocess.Popen(command, env=children_environment(os.environ), stdin=subprocess.DEVNULL,
                             process_group=0)

    def hand_on(signum, frame):
        child.send_signal(signum)

    forwarded = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {signum: signal.signal(signum, hand_on) for signum in forwarded}  # (only the main thread may)
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code if code >= 0 else 128 - code  # killed by signal s: the shell's 128 + s

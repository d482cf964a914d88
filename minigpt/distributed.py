"""Data-parallel training over MPI: N processes ("ranks") share each batch.

    mpiexec -n 2 python -m minigpt train        # 2 ranks, one core each

Every rank holds the whole model, started from the same seed. Each step, every rank
draws the same global batch (same generator, same seed), keeps its own 1/N of the rows,
and runs forward and backward on them. One Allreduce then sums the N gradient buffers,
so every rank holds the gradient of the whole batch and takes the same AdamW step: the
weights stay identical everywhere without ever being sent. Rank 0 alone evaluates,
logs, saves checkpoints and samples.

Why the sum is the right gradient: the loss is the mean over the global batch of G rows,
L = (1/G) sum_i l_i. Rank r holds G/N of the rows, so its mean loss L_r = (N/G) sum over
its rows, and L = (1/N) sum_r L_r. Backpropagating dloss = 1/N from L_r and summing over
ranks therefore gives dL exactly (up to float rounding: the sums run in another order).

mpi4py is optional. Without MPI (plain `python -m minigpt ...`) `world()` is a
stand-in of one rank whose collectives do nothing, so the training loop reads the same
either way. Launched by mpiexec with several ranks but without mpi4py, it is an error
that says what to install.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

# Variables that MPI launchers set in every process they start: (rank, size, local size)
# for MPICH/Intel MPI (Hydra) and for Open MPI.
_LAUNCHER_VARIABLES = (
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE"),
)


class MPIUnavailable(RuntimeError):
    """Started by mpiexec with several ranks, but mpi4py cannot be imported."""


# How long a waiting benchmark process sleeps between checks for its next request. Rarely:
# each wake-up takes a core for a moment from the layout being timed, and a multi-threaded
# step waits for its slowest thread. Checking every 1 ms made one process on 2 threads
# measure 44-46 ms a step instead of 34-37 (PyTorch's 53-60 instead of 42-54).
IDLE_POLL_S = 0.02


@dataclass
class World:
    """The ranks of this run. rank 0 is the root: it alone evaluates, logs and writes files.

    comm is mpi4py's COMM_WORLD, or None for a single process (every collective is then
    a no-op and the code reads the same)."""

    rank: int = 0
    size: int = 1
    comm: object = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def check_divides(self, batch_size: int) -> None:
        """A global batch splits into equal parts, one per rank, or not at all."""
        if batch_size % self.size:
            raise ValueError(f"batch_size {batch_size} cannot be split evenly over {self.size} ranks: "
                             f"choose a batch_size divisible by {self.size} (or run with another mpiexec -n)")

    def local_rows(self, array: np.ndarray) -> np.ndarray:
        """This rank's share of a global batch: rows [rank * B/N, (rank + 1) * B/N)."""
        part = array.shape[0] // self.size
        return array[self.rank * part:(self.rank + 1) * part]  # (B/N, ...)

    def sum_gradients(self, flat_grads: np.ndarray) -> None:
        """One Allreduce, in place: afterwards every rank holds the sum over all ranks."""
        if self.comm is not None:
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, flat_grads, op=MPI.SUM)

    def mean(self, value: float) -> float:
        """The mean of a number over the ranks (each rank's loss -> the global batch's)."""
        if self.comm is None:
            return value
        from mpi4py import MPI

        buffer = np.array([value], dtype=np.float64)
        self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        return float(buffer[0]) / self.size

    def root_decides(self, flag: bool) -> bool:
        """Rank 0's flag, on every rank (e.g. "Ctrl-C was pressed: stop after this step").
        A signal reaches the ranks at slightly different moments; the root's answer is the
        one everybody acts on, so all ranks stop after the same iteration."""
        if self.comm is None:
            return flag
        buffer = np.array([flag], dtype=np.uint8)
        self.comm.Bcast(buffer, root=0)
        return bool(buffer[0])

    def broadcast_int(self, value: int, poll_s: float = IDLE_POLL_S) -> int:
        """Rank 0's integer on every rank, the others waiting without spinning (they sleep
        between checks): MPI's blocking calls busy-wait, which would steal the cores of
        whatever else runs meanwhile (the benchmark times other processes while these wait;
        IDLE_POLL_S says why the checks are rare)."""
        if self.comm is None:
            return value
        buffer = np.array([value], dtype=np.int64)
        request = self.comm.Ibcast(buffer, root=0)
        while not request.Test():
            time.sleep(poll_s)
        return int(buffer[0])

    def abort(self, code: int = 1) -> None:
        """Stop every rank: after an error on one rank the others would wait for it forever."""
        if self.comm is not None:
            self.comm.Abort(code)


SINGLE_PROCESS = World()
_world = None  # made by world() on first use


def stop_all_ranks(code: int) -> int:
    """After an error on this rank: under MPI, end every rank with this exit code (the
    others would otherwise wait for this one forever); returns code for a single process."""
    if launched_ranks() is not None:
        try:
            world().abort(code)
        except MPIUnavailable:  # no MPI, no collectives: nobody is waiting
            pass
    return code


def launched_ranks() -> tuple[int, int, int] | None:
    """(rank, size, ranks on this machine) from the launcher's variables, or None when this
    process was not started by mpiexec (or started as its only rank)."""
    for rank_var, size_var, local_var in _LAUNCHER_VARIABLES:
        if size_var in os.environ:
            size = int(os.environ[size_var])
            if size > 1:
                return int(os.environ.get(rank_var, 0)), size, int(os.environ.get(local_var, size))
    return None


def started_by_launcher() -> bool:
    """Whether an MPI launcher started this process, as one of several ranks or as its only one."""
    return any(size_var in os.environ for _, size_var, _ in _LAUNCHER_VARIABLES)


def world() -> World:
    """This process's World: MPI's when mpiexec started several ranks, else SINGLE_PROCESS.

    MPI is only imported in the first case, so a plain run never needs (or initialises)
    it. Under MPI the cores of each machine are shared out: every rank gets
    cores // (ranks on this machine) threads for Numba and for BLAS alike (unless the
    thread variables, e.g. OMP_NUM_THREADS, were set by hand)."""
    global _world
    if _world is not None:
        return _world
    launched = launched_ranks()
    if launched is None:
        _world = SINGLE_PROCESS
        return _world
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise MPIUnavailable(
            f"this process was started by mpiexec as one of {launched[1]} ranks, but mpi4py cannot be "
            f"imported ({err}); install it with: pip install mpi4py mpich (or run without mpiexec)") from None
    comm = MPI.COMM_WORLD
    from minigpt import runtime

    if not runtime.threads_set_by_hand():
        runtime.limit_threads(max(1, runtime.available_cores() // launched[2]))
    _world = World(comm.Get_rank(), comm.Get_size(), comm)
    return _world


def mpiexec_path() -> str | None:
    """The mpiexec that `pip install mpich` put beside this Python, else one on PATH, else None."""
    import shutil
    import sysconfig

    return shutil.which("mpiexec", path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))


class RowsOfGlobalDraws:
    """A random generator's stand-in whose draws are this rank's rows of the global draw.

    The model draws its dropout masks with rng.random((B_local, ...)); with this in place
    of model.rng, every rank draws the mask of the whole global batch (B_local * N rows)
    from the same generator and keeps its own rows. The masks are then exactly those of a
    single process training on the global batch, and the generator's state, the same on
    every rank, is what the checkpoint saves (so a run resumes with any number of ranks).
    The price: every rank draws the whole batch's masks."""

    def __init__(self, generator: np.random.Generator, world: World):
        self.generator, self.world = generator, world

    @property
    def bit_generator(self):
        return self.generator.bit_generator

    def random(self, shape, dtype=np.float64):
        whole = self.generator.random((shape[0] * self.world.size, *shape[1:]), dtype=dtype)
        return self.world.local_rows(whole)

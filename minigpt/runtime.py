"""Settings that make minigpt's training step much faster on a small CPU.

Both are process-wide, applied when minigpt.kernels is first imported. Set
MINIGPT_NO_RUNTIME_TUNING=1 to keep the libraries' defaults (the benchmark does so for the
PyTorch process it times, so that PyTorch runs as its users run it).
"""

from __future__ import annotations

import ctypes
import os

TUNE_RUNTIME = os.environ.get("MINIGPT_NO_RUNTIME_TUNING") != "1"

# 1. Numba's parallel kernels run on OpenMP threads, and OpenMP threads spin while they
# wait for work by default. On a 2-core machine they then steal the cores OpenBLAS needs
# for the next matmul, and a training step runs 5x slower. Waiting passively (sleeping)
# costs nothing measurable here. Set before Numba first starts its threads; a user's own
# OMP_WAIT_POLICY wins.
if TUNE_RUNTIME:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _keep_freed_memory_for_reuse():
    """2. Ask glibc's malloc to keep freed memory instead of returning it to the system.

    A training step allocates and frees the same large temporaries (activations, their
    gradients) every iteration. By default glibc hands blocks above a threshold back to
    the kernel when they are freed, so the next step touches fresh pages and pays a page
    fault for every 4 KiB: about a third of the step time at the preset's size. Serving
    blocks up to 32 MiB from the heap and keeping 256 MiB of slack makes the memory of one
    step the memory of the next. Linux/glibc only; elsewhere nothing changes."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # from glibc's malloc.h
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # the largest value glibc accepts
    libc.mallopt(M_TOP_PAD, 256 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 512 << 20)


if TUNE_RUNTIME:
    _keep_freed_memory_for_reuse()


# The variables that set the thread counts of OpenMP, OpenBLAS, MKL and Numba when they load.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_set_by_hand() -> bool:
    """Whether the user chose thread counts (any of THREAD_VARIABLES is set): then it wins."""
    return any(name in os.environ for name in THREAD_VARIABLES)


def limit_threads(n: int) -> None:
    """Run Numba's parallel kernels and BLAS's matmuls on n threads each, from now on.

    Used when several processes share a machine (data-parallel ranks): each then gets its
    share of the cores, and threads of different processes do not fight over the same
    ones. BLAS reads OPENBLAS_NUM_THREADS only when NumPy loads, long before this, so its
    count is changed through threadpoolctl (in requirements.txt); without it BLAS keeps
    its default, which is slower."""
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        import threadpoolctl
    except ImportError:
        import warnings

        warnings.warn(f"threadpoolctl is not installed, so BLAS keeps its own thread count instead of {n} "
                      f"(pip install threadpoolctl)", stacklevel=2)
        return
    threadpoolctl.threadpool_limits(limits=n, user_api="blas")

"""Two process-wide settings that make minigpt's training step much faster on a small CPU.

Both are applied when minigpt.kernels is first imported. Set MINIGPT_NO_RUNTIME_TUNING=1
to keep the defaults (the benchmark does so for the PyTorch process it times, so that
PyTorch runs as its users run it).
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

"""The two Numba decorators every kernel module compiles with, defined once.

Every kernel is compiled with `cache=True` (the machine code is saved next to the kernel's
source file, so later runs skip compilation) and `fastmath=False` (no reordering of float
operations, so results match the reference closely and NaNs/infs behave as in NumPy).
`parallel_jit` also lets `prange` loops split their iterations across the CPU cores.
(One exception, with its reason: the two sums of the matmul ladder's top rungs in
matmul_like_blas.py may be reassociated.)
"""

from __future__ import annotations

import numba

serial_jit = numba.njit(cache=True, fastmath=False)
parallel_jit = numba.njit(cache=True, fastmath=False, parallel=True)

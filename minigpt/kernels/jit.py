"""The two Numba decorators every kernel module compiles with, defined once.

Every kernel is compiled with `cache=True` (the machine code is saved next to the kernel's
source file, so later runs skip compilation) and `fastmath=False` (no reordering of float
operations, so results match the reference closely and NaNs/infs behave as in NumPy).
Two exceptions, each with its reason where it is used: the two sums of the matmul
ladder's top rungs in matmul_like_blas.py may be reassociated, and so may the float64 row
sums of numba_reductions.py (`reduction_jit`: the `reassoc` flag alone, so that LLVM can
add 8 lanes at once; their accuracy is tested against math.fsum). `parallel_jit` also lets
`prange` loops split their iterations across the CPU cores.

Both use `error_model="numpy"`: a float division by zero gives inf or nan, as in NumPy
(and so as in the reference kernels), instead of Python's ZeroDivisionError. Python's rule
costs a test and a branch to raise before every division, and that branch stops LLVM from
vectorising the loop: GELU's backward (a division per element) took 25x as long with it,
one element at a time instead of 16 (measured on 393K float32 elements, one thread).
"""

from __future__ import annotations

import numba

serial_jit = numba.njit(cache=True, fastmath=False, error_model="numpy")
parallel_jit = numba.njit(cache=True, fastmath=False, error_model="numpy", parallel=True)
reduction_jit = numba.njit(cache=True, fastmath={"reassoc"}, error_model="numpy")  # numba_reductions only

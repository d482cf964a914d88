"""The Numba decorators every kernel module compiles with, defined once.

Every kernel is compiled with `cache=True` (the machine code is saved next to the kernel's
source file, so later runs skip compilation) and one fast-math flag only, `contract`: LLVM
may compute x * y + z as one fused multiply-add instruction (FMA), rounded once instead of
twice. Nothing is reordered (no `reassoc`), NaNs and infinities behave as in NumPy (no
`nnan`, `ninf`), so results match the reference closely. Why contract: the element-wise
kernels are arithmetic-bound once vectorised, and a fused multiply-add does the work of
two instructions. GELU (vector_exp's polynomial inside, 393K float32 elements, one thread
of an AMD EPYC) took 286 -> 216 us forward and 366 -> 289 us backward with it; the
result is at least as accurate (one rounding fewer), but can differ in the last bit from
a machine without FMA instructions.

Two exceptions, each with its reason where it is used: the two sums of the matmul
ladder's top rungs in matmul_like_blas.py may be reassociated, and so may the float64 row
sums of numba_reductions.py (`reduction_jit`: the `reassoc` flag, so that LLVM can add 8
lanes at once; their accuracy is tested against math.fsum). `parallel_jit` also lets
`prange` loops split their iterations across the CPU cores.

Numba's cache is keyed on each kernel's own source file and bytecode, not on the flags
here: after changing a flag in this file, delete the cached machine code (`find minigpt
-name '*.nbi' -delete`, and the same in NUMBA_CACHE_DIR if set), or the kernels keep running
as compiled before.

All use `error_model="numpy"`: a float division by zero gives inf or nan, as in NumPy
(and so as in the reference kernels), instead of Python's ZeroDivisionError. Python's rule
costs a test and a branch to raise before every division, and that branch stops LLVM from
vectorising the loop: GELU's backward (a division per element) took 25x as long with it,
one element at a time instead of 16 (measured on 393K float32 elements, one thread).
"""

from __future__ import annotations

import numba

FASTMATH = {"contract"}  # fused multiply-adds only (see above)

serial_jit = numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
parallel_jit = numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy", parallel=True)
reduction_jit = numba.njit(cache=True, fastmath={"reassoc", *FASTMATH}, error_model="numpy")  # numba_reductions only

"""exp(x) that a Numba loop can vectorise: `vector_exp`, for the kernels' exp-heavy passes.

Inside a Numba loop, `math.exp` is a call into the C library, one element at a time;
LLVM cannot turn a loop containing it into SIMD code. NumPy's `np.exp` is SIMD, but it is
a pass of its own over memory: a kernel then has to write its exponents out, let NumPy
exp them, and read them back. At minigpt's sizes the data (a 768 x 512 MLP activation,
1.5 MB) no longer fits the core's L2 cache, so those extra passes, not the arithmetic,
are what cost: on this machine (AMD EPYC, one thread) GELU's forward took 3 passes + an
np.exp (7 trips over the array), its backward the same.

`vector_exp(x)` for float32 x is the exp below, written only with +, *, floor and bit
operations, so it inlines into the loop that calls it and LLVM vectorises that loop
(16 lanes with AVX-512): the exponent is computed, exp'd and used in one pass. For
float64 x it is `math.exp` (the float64 kernels serve gradient checks, where accuracy
counts and speed does not).

The float32 exp (the classic Cody-Waite + polynomial recipe, as in Cephes' expf):

    exp(x) = 2^n exp(r),   n = round(x / ln 2),   r = x - n ln 2  in [-ln2/2, ln2/2]

r is computed with ln 2 split in two parts (the first exact in float32), so it keeps its
precision; exp(r) is a degree-7 polynomial (Cephes' coefficients); 2^n is built directly
from the bits of a float (exponent field n + 127). Measured against float64 exp over
[-87, 88.7]: at most ~1 ulp (relative error < 1.2e-7, about what np.exp gives), checked in
tests/test_kernels_exp.py. Edges: results below 2^-125 (x < -86.6, where float32 starts
losing precision to denormals) are flushed to 0, so exp(-inf) = 0 exactly, which the
attention kernels rely on; x > ln(FLT_MAX) gives inf; nan gives nan. The only fast-math
flag is jit.py's `contract` (a multiply and the add after it may be one fused
instruction, rounded once): the order of every operation is the one written here.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

_LOG2E = np.float32(1.4426950408889634)  # 1 / ln 2
_LN2_HI = np.float32(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO; _LN2_HI has 9 significant
_LN2_LO = np.float32(-2.12194440e-4)  # bits, so n * _LN2_HI is exact for |n| < 2^15
_EXP_POLY = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                           4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_LOWEST = np.float32(-87.0)  # below it 2^(n-1) would leave float32's exponent range: 0
_HIGHEST = np.float32(88.72283)  # ln(FLT_MAX): above it, exp overflows to inf


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bit pattern is the int32 `bits` (a reinterpretation,
    as C's memcpy from int to float: no conversion). Numba has no scalar .view()."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


def vector_exp(x):
    """exp(x): the float32 recipe above for float32 x, math.exp for float64 (Numba only)."""
    raise NotImplementedError("vector_exp is for Numba kernels; use np.exp in Python")


@overload(vector_exp, inline="always")  # inlined, so the calling loop can be vectorised
def _vector_exp(x):
    if x == types.float32:
        return _exp_float32
    if x == types.float64:
        return lambda x: math.exp(x)
    return None


def _exp_float32(x):
    xc = min(max(x, _LOWEST), _HIGHEST)
    n = np.floor(xc * _LOG2E + np.float32(0.5))  # round(x / ln 2)
    r = (xc - n * _LN2_HI) - n * _LN2_LO  # x - n ln 2, in [-ln2/2, ln2/2]
    c0, c1, c2, c3, c4, c5 = _EXP_POLY
    p = ((((c0 * r + c1) * r + c2) * r + c3) * r + c4) * r + c5  # exp(r) = 1 + r + r^2 p(r)
    p = p * r * r + r + np.float32(1.0)
    # 2^n as 2^(n-1) * 2: n runs up to 128 (x near ln(FLT_MAX)), one past float32's
    # largest exponent; n - 1 = -127 gives the bit pattern 0, i.e. 0.0 (the flush above)
    half_scale = _float32_from_bits((np.int32(n) + np.int32(126)) << np.int32(23))
    y = (p * np.float32(2.0)) * half_scale  # p * 2 is exact: one rounding, never a denormal in between
    y = np.float32(np.inf) if x > _HIGHEST else y
    return y if x == x else x  # nan stays nan

"""Matrix multiplication by hand, a ladder of six kernels from the definition to BLAS's tricks.

The lesson: C = A B costs 2 M K N floating-point operations whichever way it is written,
yet the kernels below differ in speed by two orders of magnitude. What changes is how the
loops walk through memory, how many times each number loaded is used, and how many cores
share the work. Rungs 1-3 are in this file:

1. `matmul_naive` is the definition, C[i, j] = sum_k A[i, k] B[k, j]. The inner loop walks
   down a *column* of B, one element per cache line of 64 bytes, and its sum is a chain of
   dependent additions, which the compiler may not reorder (that would change the rounding),
   so nothing runs in SIMD lanes.
2. `matmul_blocked` reorders the loops to i, k, j: the inner loop becomes
   C[i, j0:j1] += A[i, k] * B[k, j0:j1], a row of B and a row of C, contiguous and
   independent per j, so it vectorises. The loops are also tiled: a BLOCK_K x BLOCK_N tile
   of B is reused for BLOCK_M rows of A while it is still in cache.
3. `matmul_parallel` gives each core its own band of rows of C (no two cores ever write
   the same element, so no locks are needed).

Rungs 4-6 are in matmul_like_blas.py: they do what BLAS does (pack B into a contiguous
buffer, keep a 4 x 4 tile of C in registers for the whole k loop so that every number
loaded is used four times, then share bands of C between the cores), and reach about
70% of BLAS's speed on one core at 512^3 (`matmul_register_blocked`). BLAS keeps the
rest with hand-written assembly, which is why minigpt keeps np.matmul as its default
matmul and these kernels as the lesson. `python -m minigpt bench kernels` reports
every rung in GFLOP/s and as a percentage of BLAS on the same number of threads.

Every kernel is correct for any shapes, including sizes that are not multiples of the
block sizes (the last tile in each direction is simply smaller; rungs 5-6 compute the
rows and columns left over by their 4 x 4 tiles one dot product at a time).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from minigpt.kernels import matmul_like_blas as like_blas
from minigpt.kernels.jit import parallel_jit, serial_jit

BLOCK_M = 64  # rows of A (and C) per tile
BLOCK_K = 128  # shared dimension per tile: a BLOCK_K x BLOCK_N tile of B stays in cache
BLOCK_N = 256  # columns of B (and C) per tile; one row of it is 1 KB in float32


@serial_jit
def _naive(a, b, out):
    M, K = a.shape
    N = b.shape[1]
    for i in range(M):
        for j in range(N):
            total = 0.0
            for k in range(K):  # strided walk down column j of B
                total += a[i, k] * b[k, j]
            out[i, j] = total


@serial_jit
def _accumulate_tile(a, b, out, i0, i1, k0, k1, j0, j1):
    """out[i0:i1, j0:j1] += a[i0:i1, k0:k1] @ b[k0:k1, j0:j1], in i-k-j order."""
    for i in range(i0, i1):
        # Row views make the inner loop index from 0, so the compiler can see the indices
        # are never negative (no wrap-around check per element) and vectorise the loop.
        out_row = out[i, j0:j1]
        for k in range(k0, k1):
            a_ik = a[i, k]
            b_row = b[k, j0:j1]
            for j in range(out_row.shape[0]):  # contiguous in b and out: SIMD-friendly
                out_row[j] += a_ik * b_row[j]


@serial_jit
def _blocked(a, b, out):
    M, K = a.shape
    N = b.shape[1]
    for i0 in range(0, M, BLOCK_M):
        for k0 in range(0, K, BLOCK_K):
            for j0 in range(0, N, BLOCK_N):
                # min(...) trims the last tile when a size is not a multiple of the block
                _accumulate_tile(a, b, out, i0, min(i0 + BLOCK_M, M), k0, min(k0 + BLOCK_K, K),
                                 j0, min(j0 + BLOCK_N, N))


@parallel_jit
def _parallel(a, b, out):
    M, K = a.shape
    N = b.shape[1]
    n_row_blocks = (M + BLOCK_M - 1) // BLOCK_M
    for block in prange(n_row_blocks):  # each core owns whole bands of rows of out
        i0 = block * BLOCK_M
        for k0 in range(0, K, BLOCK_K):
            for j0 in range(0, N, BLOCK_N):
                _accumulate_tile(a, b, out, i0, min(i0 + BLOCK_M, M), k0, min(k0 + BLOCK_K, K),
                                 j0, min(j0 + BLOCK_N, N))


def _prepare(a, b):
    """Check shapes, pick the result dtype, and make both inputs C-contiguous in it."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul needs 2-D arrays, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul shapes {a.shape} and {b.shape} do not align: "
                         f"{a.shape[1]} != {b.shape[0]}")
    dtype = np.result_type(a.dtype, b.dtype, np.float32)  # integers are promoted to floats
    a = np.ascontiguousarray(a, dtype=dtype)
    b = np.ascontiguousarray(b, dtype=dtype)
    return a, b, np.zeros((a.shape[0], b.shape[1]), dtype=dtype)


def matmul_naive(a, b):
    """a @ b by the definition: triple loop i, j, k. (M, K) @ (K, N) -> (M, N)."""
    a, b, out = _prepare(a, b)
    _naive(a, b, out)
    return out


def matmul_blocked(a, b):
    """a @ b with i-k-j loop order and cache tiles, on one core. (M, K) @ (K, N) -> (M, N)."""
    a, b, out = _prepare(a, b)
    _blocked(a, b, out)
    return out


def matmul_parallel(a, b):
    """matmul_blocked with bands of rows of the result spread over the cores."""
    a, b, out = _prepare(a, b)
    _parallel(a, b, out)
    return out


def matmul_packed(a, b):
    """a @ b as dot products of rows of A with rows of B^T, packed contiguous (SIMD along k)."""
    a, b, out = _prepare(a, b)
    like_blas.packed(a, like_blas.pack_transposed(b), out)
    return out


def matmul_register_blocked(a, b):
    """a @ b in 4 x 4 tiles of the result held in registers, on one core."""
    a, b, out = _prepare(a, b)
    like_blas.register_blocked(a, like_blas.pack_transposed(b), out)
    return out


def matmul_parallel_register_blocked(a, b):
    """matmul_register_blocked with bands of rows of the result spread over the cores."""
    a, b, out = _prepare(a, b)
    like_blas.parallel_register_blocked(a, like_blas.pack_transposed(b), out)
    return out


# The ladder, in the order of the lesson (the benchmark times them in this order).
KERNELS = {"naive": matmul_naive, "blocked": matmul_blocked, "parallel": matmul_parallel,
           "packed": matmul_packed, "register_blocked": matmul_register_blocked,
           "parallel_register_blocked": matmul_parallel_register_blocked}
PARALLEL = ("parallel", "parallel_register_blocked")  # the rungs that use more than one core

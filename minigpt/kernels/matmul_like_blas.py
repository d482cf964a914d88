"""The top of the matmul ladder, what BLAS does, in Numba: pack B, block for registers, thread.

Rungs 2 and 3 (matmul_by_hand.py) keep a row of C in memory and add a row of B into it for
every k: each multiply-add loads two numbers and stores one, so the loads and stores, not
the arithmetic, set the pace. BLAS's answer, rebuilt here in three steps:

4. `packed`: copy B transposed into a contiguous buffer, bt = B^T (BLAS calls this
   packing), so that every element of C is the dot product of two contiguous rows,
   C[i, j] = a[i, :] . bt[j, :]. The sum over k then runs in SIMD lanes: with 16 lanes
   (AVX-512, float32), lane l adds up k = l, l + 16, l + 32, ..., and the lanes are added
   together at the end. Nothing is stored inside the k loop any more, but each
   multiply-add still loads two numbers, so on its own this rung gains little over rung 2
   (1-1.5x, measured): it lays out the data for the next one.
5. `register_blocked`: compute a 4 x 4 tile of C at once. Its 16 sums live in local
   variables (registers) for the whole k loop; each step loads 4 numbers of A and 4 of
   bt and does 16 multiply-adds with them, so every number loaded is used 4 times instead
   of once. That is the micro-kernel at the heart of every BLAS. Around it, the loops are
   tiled for the caches as rung 2's were: a band of BAND_ROWS rows of A, BLOCK_K long,
   stays in the L2 cache while the four rows of bt of each tile sit in L1. (The bands
   matter once the matrices outgrow the caches: at 2048^3 they made this rung 1.5x faster;
   at 512^3 the matrices fit and they change nothing.)
6. `parallel_register_blocked`: the bands of rows of C go to different cores (no two
   cores write the same element of C, so no locks).

Rows of A need no packing here: A is C-contiguous, so its rows are already contiguous
along k. (BLAS also interleaves its packed panels so that a tile reads one stream instead
of eight; at these sizes the hardware prefetcher follows eight streams well enough.)

What BLAS still does better: its micro-kernel runs the lanes along j (one number of A
times 16 numbers of a row of B), so its sums never need the lanes added together. Here
each tile ends with 16 such additions across lanes, which cost about as much as the
whole k loop when K is only 128 (as in most of a small GPT's matmuls): there this rung
reaches about half of BLAS, at K = 512 about 70%.

Why these kernels are compiled with fastmath={"reassoc", "contract"}, and not with the
project's {"contract"} alone (see jit.py): splitting a sum over SIMD lanes adds the same
products in a different order, which changes the rounding, so the compiler may do it only
when told that reassociating additions is allowed ("reassoc"). Without it LLVM keeps one
running sum per element, one lane wide: measured at 512^3, rung 4 ran 11x slower and
rung 5 7x slower. (Running the lanes along j instead, as BLAS does, needs no
reassociation, but Numba compiles with LLVM's SLP vectoriser, the pass that would pack
those scalar sums into SIMD registers, switched off.) "contract" lets x * y + z be one
fused multiply-add instruction: one rounding instead of two, and half the instructions
(on most Intel cores separate multiplies and adds compete for the same two ports).
Neither flag touches NaN or infinity ("nnan", "ninf" stay off), and the results agree
with BLAS's to float32 rounding: BLAS too sums in an order of its own
(tests/test_matmul_by_hand.py checks every rung against the rounding-error bound of a dot
product). Only the two functions whose loops are sums get `reassoc`; the loops around
them are compiled as everywhere else.

Every kernel here takes C-contiguous a (M, K), bt (N, K) and out (M, N) of one dtype and
adds a @ bt.T into out; matmul_by_hand.py checks and prepares the inputs.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from minigpt.kernels.jit import parallel_jit, serial_jit

BAND_ROWS = 64  # rows of A (and C) per band: 64 x BLOCK_K floats of A = 128 KB, in L2
BLOCK_K = 512  # k per block; a longer block pays the end-of-loop sum of the lanes less often

# for the two loops that are sums (why: see the module docstring)
reassoc_jit = numba.njit(cache=True, fastmath={"reassoc", "contract"})


@reassoc_jit
def _dot(x, y):
    """sum_k x[k] y[k], summed in SIMD lanes (reassociated), in the inputs' dtype."""
    total = x.dtype.type(0)  # not 0.0, which would make the sum float64 for float32 input
    for k in range(x.shape[0]):
        total += x[k] * y[k]
    return total


@serial_jit
def packed(a, bt, out):
    """Rung 4: out += a @ bt.T, one dot product of two contiguous rows per element."""
    for i in range(a.shape[0]):
        for j in range(bt.shape[0]):
            out[i, j] += _dot(a[i], bt[j])


@reassoc_jit
def _tile_4x4(a, bt, out, i, j, k0, k1):
    """out[i:i+4, j:j+4] += a[i:i+4, k0:k1] @ bt[j:j+4, k0:k1].T, its 16 sums in registers."""
    a0, a1, a2, a3 = a[i, k0:k1], a[i + 1, k0:k1], a[i + 2, k0:k1], a[i + 3, k0:k1]  # 4 rows of A
    b0, b1, b2, b3 = bt[j, k0:k1], bt[j + 1, k0:k1], bt[j + 2, k0:k1], bt[j + 3, k0:k1]  # 4 columns of B
    zero = out.dtype.type(0)
    c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
    c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero
    for k in range(k1 - k0):
        x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]  # 8 loads ...
        y0, y1, y2, y3 = b0[k], b1[k], b2[k], b3[k]
        c00, c01, c02, c03 = c00 + x0 * y0, c01 + x0 * y1, c02 + x0 * y2, c03 + x0 * y3  # ... 16 multiply-adds
        c10, c11, c12, c13 = c10 + x1 * y0, c11 + x1 * y1, c12 + x1 * y2, c13 + x1 * y3
        c20, c21, c22, c23 = c20 + x2 * y0, c21 + x2 * y1, c22 + x2 * y2, c23 + x2 * y3
        c30, c31, c32, c33 = c30 + x3 * y0, c31 + x3 * y1, c32 + x3 * y2, c33 + x3 * y3
    _add_to_row(out[i, j:j + 4], c00, c01, c02, c03)  # C is loaded and stored once per tile
    _add_to_row(out[i + 1, j:j + 4], c10, c11, c12, c13)
    _add_to_row(out[i + 2, j:j + 4], c20, c21, c22, c23)
    _add_to_row(out[i + 3, j:j + 4], c30, c31, c32, c33)


@serial_jit
def _add_to_row(row, c0, c1, c2, c3):
    row[0] += c0
    row[1] += c1
    row[2] += c2
    row[3] += c3


@serial_jit
def _band(a, bt, out, i0, i1, k0, k1):
    """out[i0:i1] += a[i0:i1, k0:k1] @ bt[:, k0:k1].T: whole 4 x 4 tiles, then the edges."""
    N = bt.shape[0]
    i_tiles = i0 + (i1 - i0) // 4 * 4  # rows i0..i_tiles-1 and columns 0..j_tiles-1 fill whole tiles
    j_tiles = N // 4 * 4
    for j in range(0, j_tiles, 4):  # 4 rows of bt stay in L1 while the band's rows of A pass by
        for i in range(i0, i_tiles, 4):
            _tile_4x4(a, bt, out, i, j, k0, k1)
    for i in range(i0, i1):  # the edges (fewer than 4 rows or columns left), one dot product each
        for j in range(j_tiles if i < i_tiles else 0, N):
            out[i, j] += _dot(a[i, k0:k1], bt[j, k0:k1])


@serial_jit
def register_blocked(a, bt, out):
    """Rung 5: out += a @ bt.T in 4 x 4 register tiles, band by band, block of k by block."""
    M, K = a.shape
    for i0 in range(0, M, BAND_ROWS):
        for k0 in range(0, K, BLOCK_K):
            _band(a, bt, out, i0, min(i0 + BAND_ROWS, M), k0, min(k0 + BLOCK_K, K))


@parallel_jit
def parallel_register_blocked(a, bt, out):
    """Rung 6: register_blocked with the bands of rows of C spread over the cores."""
    M, K = a.shape
    n_bands = (M + BAND_ROWS - 1) // BAND_ROWS
    for band in prange(n_bands):  # each core owns whole bands of rows of out
        i0 = band * BAND_ROWS
        for k0 in range(0, K, BLOCK_K):
            _band(a, bt, out, i0, min(i0 + BAND_ROWS, M), k0, min(k0 + BLOCK_K, K))


@serial_jit
def _transpose_into(b, bt):
    """bt[:] = b.T, 16 x 16 elements at a time, so that the 16 rows of b read and the 16 rows
    of bt written stay in L1. (A plain copy of b.T writes bt a whole row apart each time;
    at power-of-two widths those rows fall into the same cache sets and evict each other:
    np.ascontiguousarray(b.T) takes 3x longer at 512 x 512.)"""
    K, N = b.shape
    for k0 in range(0, K, 16):
        for j0 in range(0, N, 16):
            for j in range(j0, min(j0 + 16, N)):
                for k in range(k0, min(k0 + 16, K)):
                    bt[j, k] = b[k, j]


def pack_transposed(b: np.ndarray) -> np.ndarray:
    """B^T as a C-contiguous (N, K) buffer: row j is column j of B, contiguous along k.
    K N copies against the matmul's M K N multiply-adds: cheap, but not free."""
    bt = np.empty((b.shape[1], b.shape[0]), dtype=b.dtype)
    _transpose_into(b, bt)
    return bt

"""Row sums for the Numba kernels, written so that they run at full speed.

All sums are accumulated in float64, even for float32 data, so long rows lose no precision.

A sum written as one loop is a chain: each addition waits for the previous one to finish
(several cycles), one element at a time. Vector units could add 8 float64 lanes at once,
but only by changing the order of the additions, and so the rounding, which LLVM does only
when allowed to. So these functions, and only these, are compiled with the fast-math flag
`reassoc` (jit.reduction_jit; besides it only `contract`, as every kernel, and nothing
else in the kernels may reorder its arithmetic). The reason and the cost:

- Speed: layernorm's mean and variance over 768 rows of 128 float32 took 73-84 us with the
  earlier hand-made order (four interleaved running sums, scalar float64), 25-27 us
  vectorised (AMD EPYC, one thread). Layernorm, softmax, cross-entropy and attention rows
  all use them.
- Accuracy: the result is still a float64 sum, only in another order: its rounding error
  stays within a few float64 ulps of the row's sum of magnitudes (~1e-16 relative; measured
  7.6e-16 against the scalar order), a billion times below float32's rounding, and the
  same run to run on one machine. (The flag also lets LLVM regroup a product of three
  float32 factors feeding a sum, as in layernorm_grad_sums: a float32 ulp on a term that
  float32 rounding already perturbs by as much.) tests/test_kernels_reductions.py checks
  every function against math.fsum, the exactly rounded sum.
"""

from __future__ import annotations

from minigpt.kernels.jit import reduction_jit, serial_jit


@reduction_jit
def row_sum(x, n):
    """sum_c x[n, c], accumulated in float64."""
    total = 0.0
    for c in range(x.shape[1]):
        total += x[n, c]
    return total


@reduction_jit
def row_dot(a, b, n):
    """sum_c a[n, c] * b[n, c], accumulated in float64."""
    total = 0.0
    for c in range(a.shape[1]):
        total += a[n, c] * b[n, c]
    return total


@reduction_jit
def row_sum_of_squares(x, n, shift):
    """sum_c (x[n, c] - shift)^2, accumulated in float64."""
    total = 0.0
    for c in range(x.shape[1]):
        d = x[n, c] - shift
        total += d * d
    return total


@reduction_jit
def layernorm_grad_sums(dout, x, weight, n, mu, rstd):
    """The two sums of layernorm's backward pass for row n, float64, in one loop:
    sum_c g and sum_c g * xhat, with g = dout * weight and xhat = (x - mu) rstd."""
    g_sum = gxhat_sum = 0.0
    for c in range(x.shape[1]):
        g = dout[n, c] * weight[c]
        g_sum += g
        gxhat_sum += g * ((x[n, c] - mu) * rstd)
    return g_sum, gxhat_sum


# The same, over the first n entries of a 1-D array (a row of causal attention: query i
# sees keys 0..i only, so its rows have different lengths).


@reduction_jit
def sum_first(row, n):
    """sum_{j < n} row[j], accumulated in float64."""
    total = 0.0
    for j in range(n):
        total += row[j]
    return total


@reduction_jit
def dot_first(a, b, n):
    """sum_{j < n} a[j] * b[j], accumulated in float64."""
    total = 0.0
    for j in range(n):
        total += a[j] * b[j]
    return total


@serial_jit
def max_first(row, n):
    """max_{j < n} row[j] (n >= 1), four running maxima: a max is exact in any order, but
    LLVM vectorises it only with the no-NaN fast-math flags, which would change what a NaN
    does, so the chains are interleaved by hand."""
    m0 = m1 = m2 = m3 = row[0]
    j = 0
    while j + 4 <= n:
        m0 = max(m0, row[j])
        m1 = max(m1, row[j + 1])
        m2 = max(m2, row[j + 2])
        m3 = max(m3, row[j + 3])
        j += 4
    for j in range(j, n):
        m0 = max(m0, row[j])
    return max(max(m0, m1), max(m2, m3))

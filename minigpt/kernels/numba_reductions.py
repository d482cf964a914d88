"""Row sums for the Numba kernels, written so that they run at full speed without fastmath.

A single running sum is a chain: each addition waits for the previous one to finish
(several cycles). Four running sums over interleaved elements keep the adder busy, about
four times faster on long rows. The compiler may not do this by itself: it changes the
order of the additions, and so the rounding, which is what `fastmath` would permit. Here
we choose that order ourselves, so results stay reproducible.

All sums are accumulated in float64, even for float32 data, so long rows lose no precision.
"""

from __future__ import annotations

from minigpt.kernels.jit import serial_jit


@serial_jit
def row_sum(x, n):
    """sum_c x[n, c], accumulated in float64."""
    C = x.shape[1]
    s0 = s1 = s2 = s3 = 0.0
    c = 0
    while c + 4 <= C:
        s0 += x[n, c]
        s1 += x[n, c + 1]
        s2 += x[n, c + 2]
        s3 += x[n, c + 3]
        c += 4
    for c in range(c, C):  # the last C % 4 elements
        s0 += x[n, c]
    return (s0 + s1) + (s2 + s3)


@serial_jit
def row_dot(a, b, n):
    """sum_c a[n, c] * b[n, c], accumulated in float64."""
    C = a.shape[1]
    s0 = s1 = s2 = s3 = 0.0
    c = 0
    while c + 4 <= C:
        s0 += a[n, c] * b[n, c]
        s1 += a[n, c + 1] * b[n, c + 1]
        s2 += a[n, c + 2] * b[n, c + 2]
        s3 += a[n, c + 3] * b[n, c + 3]
        c += 4
    for c in range(c, C):
        s0 += a[n, c] * b[n, c]
    return (s0 + s1) + (s2 + s3)


@serial_jit
def row_sum_of_squares(x, n, shift):
    """sum_c (x[n, c] - shift)^2, accumulated in float64."""
    C = x.shape[1]
    s0 = s1 = s2 = s3 = 0.0
    c = 0
    while c + 4 <= C:
        d0, d1 = x[n, c] - shift, x[n, c + 1] - shift
        d2, d3 = x[n, c + 2] - shift, x[n, c + 3] - shift
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        c += 4
    for c in range(c, C):
        d = x[n, c] - shift
        s0 += d * d
    return (s0 + s1) + (s2 + s3)


# The same, over the first n entries of a 1-D array (a row of causal attention: query i
# sees keys 0..i only, so its rows have different lengths).


@serial_jit
def sum_first(row, n):
    """sum_{j < n} row[j], accumulated in float64."""
    s0 = s1 = s2 = s3 = 0.0
    j = 0
    while j + 4 <= n:
        s0 += row[j]
        s1 += row[j + 1]
        s2 += row[j + 2]
        s3 += row[j + 3]
        j += 4
    for j in range(j, n):
        s0 += row[j]
    return (s0 + s1) + (s2 + s3)


@serial_jit
def dot_first(a, b, n):
    """sum_{j < n} a[j] * b[j], accumulated in float64."""
    s0 = s1 = s2 = s3 = 0.0
    j = 0
    while j + 4 <= n:
        s0 += a[j] * b[j]
        s1 += a[j + 1] * b[j + 1]
        s2 += a[j + 2] * b[j + 2]
        s3 += a[j + 3] * b[j + 3]
        j += 4
    for j in range(j, n):
        s0 += a[j] * b[j]
    return (s0 + s1) + (s2 + s3)


@serial_jit
def max_first(row, n):
    """max_{j < n} row[j] (n >= 1), four running maxima."""
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

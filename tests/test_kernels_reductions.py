"""The float64 row sums (kernels/numba_reductions.py) are compiled with the `reassoc`
fast-math flag, so LLVM may add in any order: each is checked against math.fsum, the
exactly rounded sum, to within a float64 rounding bound, for float32 and float64 rows of
lengths that are and are not multiples of the vector width, with cancelling terms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minigpt.kernels import numba_reductions as red

LENGTHS = [1, 3, 8, 17, 64, 128, 515]
DTYPES = [np.float32, np.float64]


def rows(dtype, length, seed=0):
    """Two rows: large values that nearly cancel (mean ~0, magnitudes ~1e3), and positive ones."""
    rng = np.random.default_rng([seed, length])
    cancelling = rng.standard_normal(length) * 1e3
    cancelling -= cancelling.mean()
    return np.stack([cancelling, rng.random(length) + 0.5]).astype(dtype)


def assert_float64_accurate(ours, terms):
    """|ours - fsum(terms)| within a generous float64 bound: 4 n ulp of sum |terms|."""
    terms = [float(t) for t in terms]
    exact = math.fsum(terms)
    bound = 4 * len(terms) * np.finfo(np.float64).eps * math.fsum(abs(t) for t in terms)
    assert abs(ours - exact) <= bound, (ours, exact, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("length", LENGTHS)
def test_row_sums_match_fsum(dtype, length):
    x, y = rows(dtype, length), rows(dtype, length, seed=1)
    for n in range(2):
        xs, ys = x[n].astype(np.float64), y[n].astype(np.float64)
        shift = float(xs.mean())
        assert_float64_accurate(red.row_sum(x, n), xs)
        assert_float64_accurate(red.row_dot(x, y, n), np.asarray(x[n] * y[n], dtype=np.float64))
        assert_float64_accurate(red.row_sum_of_squares(x, n, shift), (xs - shift) ** 2)
        assert_float64_accurate(red.sum_first(x[n], length), xs)
        assert_float64_accurate(red.dot_first(x[n], y[n], length), np.asarray(x[n] * y[n], dtype=np.float64))
        assert red.max_first(x[n], length) == x[n].max()


@pytest.mark.parametrize("length", [5, 64])
def test_partial_rows_sum_only_their_first_entries(length):
    x = rows(np.float32, 2 * length)[0]
    assert_float64_accurate(red.sum_first(x, length), x[:length].astype(np.float64))
    assert red.max_first(x, length) == x[:length].max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_grad_sums_match_fsum(dtype):
    rng = np.random.default_rng(5)
    dout, x = rng.standard_normal((2, 129)).astype(dtype), rng.standard_normal((2, 129)).astype(dtype) * 3
    weight = rng.standard_normal(129).astype(dtype)
    mu, rstd = dtype(x[1].mean()), dtype(1.0 / x[1].std())
    g_sum, gxhat_sum = red.layernorm_grad_sums(dout, x, weight, 1, mu, rstd)
    g = dout[1] * weight  # in the data's dtype, as the kernel forms each term
    xhat = (x[1] - mu) * rstd
    assert_float64_accurate(g_sum, g.astype(np.float64))
    # the products may be regrouped in float32 (an ulp a term): compare at float32's precision
    exact = math.fsum(float(t) for t in g * xhat)
    assert abs(gxhat_sum - exact) <= 4 * np.finfo(dtype).eps * math.fsum(abs(float(t)) for t in g * xhat)

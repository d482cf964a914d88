"""vector_exp (kernels/numba_exp.py): the float32 exp the Numba kernels inline, against
float64 exp as the oracle, at its edges, and in float64 (where it is math.exp)."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from minigpt.kernels.numba_exp import vector_exp


@numba.njit(cache=False)
def _exp_each(x, out):
    for i in range(x.size):
        out[i] = vector_exp(x[i])


def exp_each(x):
    out = np.empty_like(x)
    _exp_each(x, out)
    return out


def test_float32_within_about_one_ulp_over_its_whole_range():
    # every float32 in a dense grid over the range where exp is a normal float32
    x = np.linspace(-86.5, 88.7, 3_000_001, dtype=np.float32)
    exact = np.exp(x.astype(np.float64))
    ours = exp_each(x)
    assert ours.dtype == np.float32
    rel = np.abs(ours - exact) / exact
    assert rel.max() < 1.5e-7  # float32's ulp is 1.19e-7 relative: ~1 ulp
    assert np.median(rel) < 3e-8  # and most results are the correctly rounded float32


def test_float32_exactly_one_at_zero_and_exact_powers_of_two():
    x = np.array([0.0, math.log(2.0), -math.log(2.0), 10 * math.log(2.0)], dtype=np.float32)
    np.testing.assert_allclose(exp_each(x), np.exp(x.astype(np.float64)), rtol=1.5e-7)
    assert exp_each(np.zeros(1, np.float32))[0] == 1.0


def test_float32_edges_underflow_overflow_inf_nan():
    x = np.array([-np.inf, -1e30, -100.0, -87.5, np.inf, 1e30, 89.0, np.nan], dtype=np.float32)
    ours = exp_each(x)
    # exp(-inf) = 0 exactly (the attention kernels mask the future with -inf); results
    # below float32's normal range are flushed to 0
    assert list(ours[:4]) == [0.0, 0.0, 0.0, 0.0]
    assert np.all(np.isposinf(ours[4:7]))  # overflow
    assert np.isnan(ours[7])
    # just inside both ends: normal floats, still accurate
    inside = np.array([-86.0, 88.5], dtype=np.float32)
    np.testing.assert_allclose(exp_each(inside), np.exp(inside.astype(np.float64)), rtol=1.5e-7)


@pytest.mark.parametrize("x", [-700.0, -20.5, -1e-3, 0.0, 0.7, 33.3, 709.0])
def test_float64_is_math_exp(x):
    assert exp_each(np.array([x]))[0] == math.exp(x)


def test_python_call_is_refused():
    with pytest.raises(NotImplementedError, match="Numba"):
        vector_exp(1.0)

"""The fused kernels (issue #10): attention read straight from the qkv projection, GELU
with the bias before it, layernorm with the residual add before it.

1. Each Numba kernel against its reference twin, forward and backward, float32 and
   float64, on shapes that include T = 1, odd sizes and (for attention) T longer than one
   query block, so that the blocked products are exercised.
2. Each fused reference against the unfused maths it stands for, written out here from
   the unfused reference kernels (per-head attention on copied q, k, v; gelu(h + b);
   layernorm(x + a)), so a fusion that changes the maths fails.
3. The layers that use them against finite differences in float64, on both backends, and
   the fused kernels' clear errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from minigpt import kernels, layers
from minigpt.gradcheck import check_layer
from minigpt.kernels import numba_attention
from minigpt.kernels import numba_kernels as nb
from minigpt.kernels import reference as ref

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}  # as tests/test_kernels.py
# (B, T, H, hs): T = 1; odd sizes; T = 70 spans two query blocks, T = 130 three (the last partial)
QKV_SHAPES = [(1, 1, 1, 4), (2, 7, 3, 5), (2, 70, 2, 9), (1, 130, 1, 3)]
ROW_SHAPES = [(1, 1, 7), (3, 5, 13), (2, 1, 64), (4, 129)]


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def assert_close(ours, spec, dtype, tol=None):
    assert ours.shape == spec.shape, (ours.shape, spec.shape)
    assert ours.dtype == np.dtype(dtype), f"dtype changed to {ours.dtype}"
    assert spec.dtype == np.dtype(dtype), f"reference dtype changed to {spec.dtype}"
    assert rel_err(ours, spec) < (tol or TOL[dtype]), rel_err(ours, spec)


def randn(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def test_the_blocked_shapes_really_span_several_query_blocks():
    # the shapes above only test the blocking if T exceeds the block size in use
    assert 70 > numba_attention.QUERY_BLOCK and 130 > 2 * numba_attention.QUERY_BLOCK


# --- 1. Numba vs reference ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", QKV_SHAPES)
@pytest.mark.parametrize("with_dropout", [False, True])
def test_qkv_attention_matches_reference(shape, dtype, with_dropout):
    rng = np.random.default_rng(21)
    B, T, H, hs = shape
    qkv, dy = randn(rng, (B, T, 3 * H * hs), dtype), randn(rng, (B, T, H * hs), dtype)
    mask = ((rng.random((B, H, T, T)) > 0.25) / 0.75).astype(dtype) if with_dropout else None
    inputs = [a.copy() for a in (qkv, dy)]
    y, att = ref.qkv_attention_forward(qkv, H, mask)
    our_y, our_att = nb.qkv_attention_forward(qkv, H, mask)
    assert_close(our_y, y, dtype)
    assert_close(our_att, att, dtype)
    future = np.triu_indices(T, 1)
    assert np.all(our_att[..., future[0], future[1]] == 0)  # exactly: the future gets no weight
    assert_close(nb.qkv_attention_backward(dy, qkv, our_att, H, mask),
                 ref.qkv_attention_backward(dy, qkv, att, H, mask), dtype)
    for before, after in zip(inputs, (qkv, dy)):  # kernels return new arrays, inputs untouched
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES + [(3, 1, 517)])
def test_bias_gelu_matches_reference(shape, dtype):
    rng = np.random.default_rng(22)
    h, dout = randn(rng, shape, dtype, 3.0), randn(rng, shape, dtype)
    bias = randn(rng, shape[-1], dtype)
    h.flat[0] = -100.0  # far tail: exp(-2u) would overflow without the cap
    inputs = [a.copy() for a in (h, bias, dout)]
    out, u = ref.bias_gelu_forward(h, bias)
    our_out, our_u = nb.bias_gelu_forward(h, bias)
    assert_close(our_out, out, dtype)
    assert_close(our_u, u, dtype)
    for ours, spec in zip(nb.bias_gelu_backward(dout, u), ref.bias_gelu_backward(dout, u)):
        assert_close(ours, spec, dtype)
    for before, after in zip(inputs, (h, bias, dout)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("with_ds", [True, False])
def test_residual_layernorm_matches_reference(shape, dtype, with_ds):
    rng = np.random.default_rng(23)
    C = shape[-1]
    x, a = randn(rng, shape, dtype, 2.0) + dtype(0.5), randn(rng, shape, dtype)
    dout, ds = randn(rng, shape, dtype), (randn(rng, shape, dtype) if with_ds else None)
    w, b = randn(rng, C, dtype), randn(rng, C, dtype)
    inputs = [arr.copy() for arr in (x, a, dout)]
    s, out, mean, rstd = ref.residual_layernorm_forward(x, a, w, b)
    for ours, spec in zip(nb.residual_layernorm_forward(x, a, w, b), (s, out, mean, rstd)):
        assert_close(ours, spec, dtype)
    for ours, spec in zip(nb.residual_layernorm_backward(dout, ds, s, w, mean, rstd),
                          ref.residual_layernorm_backward(dout, ds, s, w, mean, rstd)):
        assert_close(ours, spec, dtype)
    for before, after in zip(inputs, (x, a, dout)):
        np.testing.assert_array_equal(before, after)


# --- 2. the fused references are the unfused maths -------------------------------------------


@pytest.mark.parametrize("with_dropout", [False, True])
def test_qkv_attention_reference_is_per_head_attention_on_split_copies(with_dropout):
    rng = np.random.default_rng(24)
    B, T, H, hs = 2, 6, 3, 4
    C = H * hs
    qkv, dy = rng.standard_normal((B, T, 3 * C)), rng.standard_normal((B, T, C))
    mask = (rng.random((B, H, T, T)) > 0.3) / 0.7 if with_dropout else None
    y, att = ref.qkv_attention_forward(qkv, H, mask)
    dqkv = ref.qkv_attention_backward(dy, qkv, att, H, mask)
    assert y.shape == (B, T, C) and att.shape == (B, H, T, T) and dqkv.shape == qkv.shape
    for b in range(B):
        for h in range(H):
            cols = slice(h * hs, (h + 1) * hs)  # head h: these channels of q, and of k and v after C and 2C
            q, k, v = (qkv[b, :, i * C:(i + 1) * C][:, cols].copy()[None, None] for i in range(3))
            m = None if mask is None else mask[b, h][None, None]
            out, a = ref.attention_forward(q, k, v, m)  # (1, 1, T, hs), (1, 1, T, T)
            np.testing.assert_allclose(y[b, :, cols], out[0, 0], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(att[b, h], a[0, 0], rtol=1e-12, atol=1e-12)
            dq, dk, dv = ref.attention_backward(dy[b, :, cols][None, None], q, k, v, a, m)
            for i, d in enumerate((dq, dk, dv)):
                np.testing.assert_allclose(dqkv[b, :, i * C:(i + 1) * C][:, cols], d[0, 0], rtol=1e-12, atol=1e-12)


def test_bias_gelu_reference_is_gelu_of_the_sum_and_the_bias_gradient_its_row_sum():
    rng = np.random.default_rng(25)
    h, bias, dout = rng.standard_normal((2, 3, 5)), rng.standard_normal(5), rng.standard_normal((2, 3, 5))
    out, u = ref.bias_gelu_forward(h, bias)
    np.testing.assert_allclose(u, h + bias, rtol=0, atol=0)
    np.testing.assert_allclose(out, ref.gelu_forward(h + bias), rtol=1e-15)
    du, dbias = ref.bias_gelu_backward(dout, u)
    np.testing.assert_allclose(du, ref.gelu_backward(dout, h + bias), rtol=1e-15)
    np.testing.assert_allclose(dbias, [du[..., c].sum() for c in range(5)], rtol=1e-12)


def test_residual_layernorm_reference_is_layernorm_of_the_sum_and_its_gradient_adds_the_stream():
    rng = np.random.default_rng(26)
    x, a, dout, ds = (rng.standard_normal((2, 3, 6)) for _ in range(4))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    s, out, mean, rstd = ref.residual_layernorm_forward(x, a, w, b)
    np.testing.assert_array_equal(s, x + a)
    np.testing.assert_allclose(out, ref.layernorm_forward(x + a, w, b)[0], rtol=1e-14)
    dx, dw, db = ref.layernorm_backward(dout, x + a, w, mean, rstd)
    total, dweight, dbias = ref.residual_layernorm_backward(dout, ds, s, w, mean, rstd)
    np.testing.assert_allclose(total, ds + dx, rtol=1e-14)
    np.testing.assert_allclose(dweight, dw, rtol=1e-14)
    np.testing.assert_allclose(dbias, db, rtol=1e-14)
    alone, _, _ = ref.residual_layernorm_backward(dout, None, s, w, mean, rstd)  # s used nowhere else
    np.testing.assert_allclose(alone, dx, rtol=1e-14)


# --- 3. the layers against finite differences; errors ----------------------------------------


def residual_layernorm_both_outputs(x, a, weight, bias):
    """The layer's two outputs, s and layernorm(s), stacked, so check_layer checks both paths."""
    s, out, cache = layers.residual_layernorm_forward(x, a, weight, bias)
    return np.stack([s, out]), cache


def residual_layernorm_both_gradients(dboth, cache):
    ds, dout = dboth
    dx, dweight, dbias = layers.residual_layernorm_backward(dout, ds, cache)
    return dx, dx, dweight, dbias  # s = x + a: x and a get the same gradient


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_layers_match_finite_differences(backend, with_bias):
    rng = np.random.default_rng(27)
    x, a = rng.standard_normal((2, 5, 12)), rng.standard_normal((2, 5, 12))
    bias = rng.standard_normal(12) if with_bias else None
    with kernels.using(backend):
        errors = check_layer(layers.bias_gelu_forward, layers.bias_gelu_backward, 2 * x, bias)
        assert len(errors) == (2 if with_bias else 1) and max(errors.values()) < 1e-7, errors
        errors = check_layer(residual_layernorm_both_outputs, residual_layernorm_both_gradients,
                             x, a, rng.standard_normal(12), bias)
        assert len(errors) == (4 if with_bias else 3) and max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("module", [ref, nb])
def test_fused_kernels_refuse_mismatched_shapes(module):
    with pytest.raises(ValueError, match=r"qkv must be \(B, T, 3C\).*n_head=2.*\(2, 3, 9\)"):
        module.qkv_attention_forward(np.zeros((2, 3, 9)), 2)
    with pytest.raises(ValueError, match=r"qkv must be \(B, T, 3C\)"):
        module.qkv_attention_backward(np.zeros((2, 3, 4)), np.zeros((2, 3, 9)), np.zeros((2, 2, 3, 3)), 2)
    with pytest.raises(ValueError, match=r"x \(2, 3, 4\) and a \(1, 3, 4\) must have the same shape"):
        module.residual_layernorm_forward(np.zeros((2, 3, 4)), np.zeros((1, 3, 4)), np.ones(4), np.zeros(4))

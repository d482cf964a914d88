"""Kernels: the Numba twins agree with the NumPy reference, and the reference is right.

Three kinds of test:
1. Numba vs reference for every kernel, forward and backward, float32 and float64 (both
   must keep the input's dtype), on shapes that include T = 1, sizes that are not
   multiples of any block size, and B*H > 1.
2. The reference (the spec) against independent oracles: central finite differences in
   float64 for every backward, and simple closed forms where they exist.
3. Plumbing: the backend switch, clear errors.
(The hand-written matmuls have tests of their own: test_matmul_by_hand.py.)
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from minigpt import kernels
from minigpt.kernels import numba_kernels as nb
from minigpt.kernels import reference as ref

DTYPES = [np.float32, np.float64]
# float32: the two implementations round differently (and Numba sums in float64), so they
# agree to ~1e-7; 1e-5 leaves room. float64 agrees to ~1e-15.
TOL = {np.float32: 1e-5, np.float64: 1e-12}
ROW_SHAPES = [(1, 1, 7), (3, 5, 13), (2, 1, 64), (4, 129)]  # T = 1, odd sizes, 2-D input
ATT_SHAPES = [(1, 1, 1, 4), (2, 3, 1, 5), (2, 3, 7, 5), (1, 2, 70, 9)]  # (B, H, T, hs)


def rel_err(a, b):
    """max|a - b| / max(1e-8, max(|a| + |b|)): one number for a whole array."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def assert_close(ours, spec, dtype):
    assert ours.shape == spec.shape
    assert ours.dtype == np.dtype(dtype), f"dtype changed to {ours.dtype}"
    assert spec.dtype == np.dtype(dtype), f"reference dtype changed to {spec.dtype}"
    assert rel_err(ours, spec) < TOL[dtype]


def randn(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def numerical_grad(f, x, h=1e-6):
    """Central differences of the scalar function f at x (float64), element by element."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = f()
        x[i] = old - h
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


# --- 1. Numba vs reference ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax_matches_reference(shape, dtype):
    rng = np.random.default_rng(1)
    x, dy = randn(rng, shape, dtype, 3.0), randn(rng, shape, dtype)
    y = ref.softmax_forward(x)
    assert_close(nb.softmax_forward(x), y, dtype)
    assert_close(nb.softmax_backward(dy, y), ref.softmax_backward(dy, y), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_layernorm_matches_reference(shape, dtype):
    rng = np.random.default_rng(2)
    C = shape[-1]
    x, dout = randn(rng, shape, dtype, 2.0) + dtype(0.5), randn(rng, shape, dtype)
    w, b = randn(rng, C, dtype), randn(rng, C, dtype)
    out, mean, rstd = ref.layernorm_forward(x, w, b)
    for ours, spec in zip(nb.layernorm_forward(x, w, b), (out, mean, rstd)):
        assert_close(ours, spec, dtype)
    for ours, spec in zip(nb.layernorm_backward(dout, x, w, mean, rstd),
                          ref.layernorm_backward(dout, x, w, mean, rstd)):
        assert_close(ours, spec, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES + [(3, 1, 517)])
def test_gelu_matches_reference(shape, dtype):
    rng = np.random.default_rng(3)
    x, dy = randn(rng, shape, dtype, 3.0), randn(rng, shape, dtype)
    x.flat[0] = -100.0  # far tail: exp(-2u) would overflow without the cap
    assert_close(nb.gelu_forward(x), ref.gelu_forward(x), dtype)
    assert_close(nb.gelu_backward(dy, x), ref.gelu_backward(dy, x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_rows, vocab", [(1, 5), (13, 65), (70, 3)])
def test_cross_entropy_matches_reference(n_rows, vocab, dtype):
    rng = np.random.default_rng(4)
    logits = randn(rng, (n_rows, vocab), dtype, 4.0)
    targets = rng.integers(0, vocab, n_rows)
    targets[1::3] = -100  # some ignored rows (none when n_rows == 1)
    dlosses = randn(rng, n_rows, dtype)
    losses, probs = ref.cross_entropy_forward(logits, targets)
    our_losses, our_probs = nb.cross_entropy_forward(logits, targets)
    assert_close(our_losses, losses, dtype)
    assert_close(our_probs, probs, dtype)
    assert np.all(our_losses[targets == -100] == 0)
    assert_close(nb.cross_entropy_backward(dlosses, probs, targets),
                 ref.cross_entropy_backward(dlosses, probs, targets), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ATT_SHAPES)
@pytest.mark.parametrize("with_dropout", [False, True])
def test_attention_matches_reference(shape, dtype, with_dropout):
    rng = np.random.default_rng(5)
    q, k, v, dout = (randn(rng, shape, dtype) for _ in range(4))
    B, H, T, hs = shape
    mask = None
    if with_dropout:  # a fixed mask holding 0 or 1/(1-p), as the dropout layer makes
        mask = ((rng.random((B, H, T, T)) > 0.25) / 0.75).astype(dtype)
    out, att = ref.attention_forward(q, k, v, mask)
    our_out, our_att = nb.attention_forward(q, k, v, mask)
    assert_close(our_out, out, dtype)
    assert_close(our_att, att, dtype)
    assert np.all(our_att[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)
    for ours, spec in zip(nb.attention_backward(dout, q, k, v, att, mask),
                          ref.attention_backward(dout, q, k, v, att, mask)):
        assert_close(ours, spec, dtype)


def test_attention_accepts_non_contiguous_heads():
    # The layer splits (B, T, 3C) into q, k, v and transposes to (B, H, T, hs): views.
    rng = np.random.default_rng(6)
    B, T, H, hs = 2, 5, 3, 4
    qkv = randn(rng, (B, T, 3, H, hs), np.float32).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, hs)
    q, k, v = qkv
    out, att = nb.attention_forward(q, k, v)
    expected_out, expected_att = ref.attention_forward(q, k, v)
    assert_close(out, expected_out, np.float32)
    assert_close(att, expected_att, np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_matches_reference(dtype):
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 11, (3, 17))
    idx[0, :5] = 4  # the same token many times: contributions must add up
    dout = randn(rng, (3, 17, 9), dtype)
    assert_close(nb.embedding_backward(dout, idx, 11), ref.embedding_backward(dout, idx, 11),
                 dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_matches_reference_over_several_steps(dtype):
    rng = np.random.default_rng(8)
    n = 1001
    decay_mask = (rng.random(n) > 0.3).astype(dtype)
    params_ref = randn(rng, n, dtype)
    params_nb = params_ref.copy()
    m_ref, v_ref = np.zeros(n, dtype), np.zeros(n, dtype)
    m_nb, v_nb = m_ref.copy(), v_ref.copy()
    for step in range(1, 6):
        grads = randn(rng, n, dtype)
        args = (decay_mask, 1e-2, 0.9, 0.95, 1e-8, 0.1, step)
        ref.adamw_update(params_ref, grads, m_ref, v_ref, *args)
        nb.adamw_update(params_nb, grads, m_nb, v_nb, *args)
    for ours, spec in [(params_nb, params_ref), (m_nb, m_ref), (v_nb, v_ref)]:
        assert_close(ours, spec, dtype)


# --- 2. the reference against independent oracles -------------------------------------------


def test_reference_softmax_backward_vs_finite_differences():
    rng = np.random.default_rng(10)
    x, g = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    numeric = numerical_grad(lambda: np.sum(g * ref.softmax_forward(x)), x)
    assert rel_err(ref.softmax_backward(g, ref.softmax_forward(x)), numeric) < 1e-8


def test_reference_gelu_vs_exact_formula_and_finite_differences():
    rng = np.random.default_rng(11)
    x, g = rng.standard_normal(9) * 3, rng.standard_normal(9)
    # the tanh approximation is within 1e-3 of the exact x * Phi(x)
    from math import erf, sqrt
    exact = np.array([xi * 0.5 * (1 + erf(xi / sqrt(2))) for xi in x])
    assert np.max(np.abs(ref.gelu_forward(x) - exact)) < 1e-3
    numeric = numerical_grad(lambda: np.sum(g * ref.gelu_forward(x)), x)
    assert rel_err(ref.gelu_backward(g, x), numeric) < 1e-8


def test_reference_layernorm_vs_finite_differences():
    rng = np.random.default_rng(12)
    x, g = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    out, mean, rstd = ref.layernorm_forward(x, w, b)
    # the normalised rows have mean 0 and variance var / (var + eps) = 1 - eps * rstd^2
    xhat = (out - b) / w
    assert np.allclose(xhat.mean(axis=-1), 0, atol=1e-12)
    assert np.allclose(xhat.var(axis=-1), 1 - ref.LAYERNORM_EPS * rstd**2, atol=1e-12)
    assert np.allclose(mean, x.mean(axis=-1)) and np.allclose(rstd, 1 / np.sqrt(x.var(axis=-1)
                                                                                 + 1e-5))
    dx, dw, db = ref.layernorm_backward(g, x, w, mean, rstd)

    def loss():
        return np.sum(g * ref.layernorm_forward(x, w, b)[0])
    assert rel_err(dx, numerical_grad(loss, x)) < 1e-7
    assert rel_err(dw, numerical_grad(loss, w)) < 1e-7
    assert rel_err(db, numerical_grad(loss, b)) < 1e-7


def test_reference_cross_entropy_vs_direct_formula_and_finite_differences():
    rng = np.random.default_rng(13)
    logits, targets = rng.standard_normal((4, 5)) * 2, np.array([0, -100, 4, 2])
    dlosses = rng.standard_normal(4)
    losses, probs = ref.cross_entropy_forward(logits, targets)
    direct = -np.log(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
    for n, t in enumerate(targets):
        assert losses[n] == (0 if t == -100 else pytest.approx(direct[n, t], rel=1e-12))
    numeric = numerical_grad(
        lambda: np.sum(dlosses * ref.cross_entropy_forward(logits, targets)[0]), logits)
    assert rel_err(ref.cross_entropy_backward(dlosses, probs, targets), numeric) < 1e-8
    # extreme logits: the loss stays finite and exact where probs[target] underflows
    losses, _ = ref.cross_entropy_forward(np.array([[0.0, 800.0]]), np.array([0]))
    assert losses[0] == pytest.approx(800.0)


@pytest.mark.parametrize("with_dropout", [False, True])
def test_reference_attention_vs_loops_and_finite_differences(with_dropout):
    rng = np.random.default_rng(14)
    B, H, T, hs = 1, 2, 4, 3
    q, k, v, g = (rng.standard_normal((B, H, T, hs)) for _ in range(4))
    mask = (rng.random((B, H, T, T)) > 0.3) / 0.7 if with_dropout else None
    out, _ = ref.attention_forward(q, k, v, mask)
    # independent oracle for the forward: explicit loops over visible keys only
    for h in range(H):
        for i in range(T):
            s = np.array([q[0, h, i] @ k[0, h, j] / np.sqrt(hs) for j in range(i + 1)])
            p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            if mask is not None:
                p = p * mask[0, h, i, : i + 1]
            assert np.allclose(out[0, h, i], p @ v[0, h, : i + 1], rtol=1e-12, atol=1e-12)
    _, att = ref.attention_forward(q, k, v, mask)
    dq, dk, dv = ref.attention_backward(g, q, k, v, att, mask)

    def loss():
        return np.sum(g * ref.attention_forward(q, k, v, mask)[0])
    for analytic, x in [(dq, q), (dk, k), (dv, v)]:
        assert rel_err(analytic, numerical_grad(loss, x)) < 1e-7


def test_reference_embedding_backward_vs_finite_differences():
    rng = np.random.default_rng(15)
    W, idx = rng.standard_normal((5, 3)), np.array([[0, 2, 2], [4, 2, 0]])
    g = rng.standard_normal((2, 3, 3))
    numeric = numerical_grad(lambda: np.sum(g * W[idx]), W)
    assert rel_err(ref.embedding_backward(g, idx, 5), numeric) < 1e-8


def test_reference_adamw_closed_forms():
    # First step, no decay: m_hat = g and v_hat = g^2, so each parameter moves by
    # -lr * g / (|g| + eps), i.e. by lr against the sign of its gradient.
    p, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, -4.0, 1e-3])
    m, v = np.zeros(3), np.zeros(3)
    ref.adamw_update(p, g, m, v, np.ones(3), 0.1, 0.9, 0.999, 1e-12, 0.0, 1)
    assert np.allclose(p, [0.9, -1.9, 2.9], rtol=0, atol=1e-9)
    # Zero gradient from zero moments: only the decoupled decay acts, where the mask says.
    p = np.array([1.0, 2.0])
    ref.adamw_update(p, np.zeros(2), np.zeros(2), np.zeros(2), np.array([1.0, 0.0]),
                     0.1, 0.9, 0.999, 1e-8, 0.5, 1)
    assert np.allclose(p, [1.0 - 0.1 * 0.5 * 1.0, 2.0])


# --- 3. plumbing ------------------------------------------------------------------------------


def test_backend_switch_changes_what_is_called():
    with kernels.using("numpy"):
        assert kernels.backend() == "numpy"
        assert kernels.gelu_forward is ref.gelu_forward
    with kernels.using("numba"):
        assert kernels.backend() == "numba"
        assert kernels.gelu_forward is nb.gelu_forward
        assert kernels.gelu_forward is not ref.gelu_forward
    with pytest.raises(ValueError, match="unknown backend"):
        kernels.set_backend("fortran")


def test_numba_module_exports_every_reference_kernel():
    # every public function defined in reference.py is a kernel and needs a Numba twin
    names = [name for name, fn in inspect.getmembers(ref, inspect.isfunction)
             if fn.__module__ == ref.__name__ and not name.startswith("_")]
    assert "gelu_forward" in names and "matmul" in names  # the discovery itself works
    for name in names:
        assert name in nb.__all__
        assert callable(getattr(nb, name)) and callable(getattr(ref, name))
        assert getattr(nb, name) is not getattr(ref, name) or name == "matmul"
    assert nb.LAYERNORM_EPS == ref.LAYERNORM_EPS


def test_bad_targets_and_token_ids_raise_value_error():
    logits = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"targets must be in \[0, 4\) or -100 \(ignored\); found \[4\]"):
        nb.cross_entropy_forward(logits, np.array([0, 4, -100]))
    with pytest.raises(ValueError, match="token ids"):
        nb.embedding_backward(np.zeros((2, 3)), np.array([0, 5]), 5)
    with pytest.raises(ValueError, match="C-contiguous"):
        p = np.zeros((4, 4))[:, ::2]
        nb.adamw_update(p, p.copy(), p.copy(), p.copy(), 1.0, 1e-3, 0.9, 0.95, 1e-8, 0.0, 1)


@pytest.mark.parametrize("module", [ref, nb], ids=["numpy", "numba"])
def test_a_negative_target_other_than_ignore_index_is_refused_by_both_backends(module):
    """NumPy would read target -1 as the last class (a silently wrong loss); both backends
    refuse it, forward and backward, with the same message naming the target."""
    logits = np.random.default_rng(5).standard_normal((3, 4))
    targets = np.array([0, -1, -100])
    message = r"targets must be in \[0, 4\) or -100 \(ignored\); found \[-1\]"
    with pytest.raises(ValueError, match=message):
        module.cross_entropy_forward(logits, targets)
    _, probs = module.cross_entropy_forward(logits, np.array([0, 3, -100]))
    with pytest.raises(ValueError, match=message):
        module.cross_entropy_backward(np.ones(3), probs, targets)
    with pytest.raises(ValueError, match=r"or -1 \(ignored\); found \[-100\]"):  # another ignore_index
        module.cross_entropy_forward(logits, np.array([-1, -100, 1]), ignore_index=-1)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_all_targets_ignored_gives_loss_zero_and_zero_gradients(backend):
    """As the layer's docstring says: nothing to average over is a loss of 0, not 0/0."""
    from minigpt import layers

    logits = np.random.default_rng(6).standard_normal((2, 3, 5))
    targets = np.full((2, 3), -100)
    with kernels.using(backend):
        loss, cache = layers.cross_entropy_forward(logits, targets)
        (dlogits,) = layers.cross_entropy_backward(1.0, cache)
    assert loss == 0.0 and np.isfinite(loss)
    assert dlogits.shape == logits.shape and np.all(dlogits == 0.0)

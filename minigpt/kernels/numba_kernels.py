"""Numba twins of the kernels in `reference.py`: same names, arguments, results and dtypes.

The maths lives in the docstrings of `reference.py`; each function here points at it and
explains only how the loops are arranged. Causal attention lives in `numba_attention.py`
and AdamW in `numba_adamw.py`; this module re-exports them. Four ideas recur:

- **One pass instead of many.** NumPy evaluates `0.5 * x * (1 + tanh(u))` as a chain of
  whole-array operations, each writing a temporary array. A Numba loop computes the whole
  expression per element, so the data is read once and no temporaries are allocated.
- **Rows in parallel.** Row-wise kernels (softmax, layernorm, cross-entropy) treat every
  row independently, so `prange` hands rows to the CPU cores. Leading dimensions are
  flattened first by a thin Python wrapper: (B, T, C) becomes (B*T, C) and back.
- **Exps in SIMD.** Inside a Numba loop `math.exp` is a scalar library call, three to
  six times slower per element than NumPy's SIMD `np.exp`. GELU, the largest exp-heavy
  kernel, calls `vector_exp` (numba_exp.py), an exp LLVM vectorises with the loop around
  it, so each direction is one pass over memory. Softmax and cross-entropy (rows of 65
  logits) are a Numba pass that prepares the exponents, one in-place `np.exp`, and a Numba
  pass that finishes: still far fewer passes than the reference's chain of operations.
- **Sums in float64, everything else in the data's dtype.** Row sums (softmax normaliser,
  layernorm mean and variance) come from `numba_reductions.py`: float64, vectorised.
  Element-wise work stays in the input dtype: kernels receive their constants already
  converted to it (a bare Python float literal is a float64 in Numba and would
  silently promote every float32 operation to float64, which is half the speed).

Why every kernel is compiled with `cache=True` and only the `contract` fast-math flag (fused
multiply-adds, nothing reordered): see `jit.py`.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from minigpt.kernels import reference
from minigpt.kernels.jit import parallel_jit, serial_jit
from minigpt.kernels.numba_adamw import adamw_update
from minigpt.kernels.numba_attention import (attention_backward, attention_forward, qkv_attention_backward,
                                             qkv_attention_forward)
from minigpt.kernels.numba_exp import vector_exp
from minigpt.kernels.numba_reductions import layernorm_grad_sums, row_dot, row_sum, row_sum_of_squares
from minigpt.kernels.reference import GELU_COEFF, GELU_CUBIC, LAYERNORM_EPS

__all__ = [
    "LAYERNORM_EPS", "matmul", "softmax_forward", "softmax_backward", "layernorm_forward",
    "layernorm_backward", "gelu_forward", "gelu_backward", "cross_entropy_forward",
    "cross_entropy_backward", "attention_forward", "attention_backward",
    "embedding_backward", "adamw_update", "qkv_attention_forward", "qkv_attention_backward",
    "bias_gelu_forward", "bias_gelu_backward", "residual_layernorm_forward", "residual_layernorm_backward",
]

# BLAS (np.matmul) runs near the machine's peak; no hand-written loop here beats it, so the
# default path keeps it. The hand-written Numba matmuls, and the lesson of why BLAS wins,
# are in matmul_by_hand.py (and `python -m minigpt bench` measures them).
matmul = reference.matmul


def _as_rows(x):
    """View (or copy) x as a C-contiguous (N, C) array of rows: the layout the loops expect."""
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1])


# --- softmax over the last axis -----------------------------------------------------------


@parallel_jit
def _shift_by_row_max(x, shifted):
    """shifted = x - max(x) per row: the exponents of a stable softmax (all <= 0)."""
    for n in prange(x.shape[0]):  # rows are independent: one core per chunk of rows
        row_max = x[n, 0]
        for c in range(1, x.shape[1]):
            row_max = max(row_max, x[n, c])
        for c in range(x.shape[1]):
            shifted[n, c] = x[n, c] - row_max


@parallel_jit
def _normalise_rows(e, row_sums):
    """e /= sum(e) per row, keeping each row's sum (cross-entropy needs its log)."""
    for n in prange(e.shape[0]):
        total = row_sum(e, n)
        row_sums[n] = total
        inv_total = 1.0 / total
        for c in range(e.shape[1]):
            e[n, c] *= inv_total


@parallel_jit
def _softmax_backward_rows(dy, y, dx):
    for n in prange(y.shape[0]):
        dot = row_dot(dy, y, n)  # sum_j y_j dy_j, the part every input shares
        for c in range(y.shape[1]):
            dx[n, c] = y[n, c] * (dy[n, c] - dot)


def softmax_forward(x):
    """Softmax over the last axis; maths in reference.softmax_forward."""
    rows = _as_rows(x)
    out = np.empty_like(rows)
    _shift_by_row_max(rows, out)  # subtracting the max keeps exp from overflowing
    np.exp(out, out=out)  # NumPy's SIMD exp, in place (see the module docstring)
    _normalise_rows(out, np.empty(rows.shape[0]))
    return out.reshape(x.shape)


def softmax_backward(dy, y):
    """Softmax gradient over the last axis; maths in reference.softmax_backward."""
    dy_rows, y_rows = _as_rows(dy.astype(y.dtype, copy=False)), _as_rows(y)
    dx = np.empty_like(y_rows)
    _softmax_backward_rows(dy_rows, y_rows, dx)
    return dx.reshape(y.shape)


# --- layer normalisation over the last axis, optionally with the residual add before it -----


@parallel_jit
def _layernorm_rows(x, a, add_a, weight, bias, eps, s, out, mean, rstd):
    """out = layernorm(src) per row, src = x, or with add_a, src = s = x + a (written to s)."""
    C = x.shape[1]
    for n in prange(x.shape[0]):  # rows are independent: one core per chunk of rows
        if add_a:  # the residual add, fused: s is read back from cache right away
            for c in range(C):
                s[n, c] = x[n, c] + a[n, c]
        src = s if add_a else x
        mu = row_sum(src, n) / C
        # variance from the centred values (two passes): sum(x^2) - mu^2 would cancel badly
        var = row_sum_of_squares(src, n, mu) / C
        mean[n] = mu
        rstd[n] = 1.0 / math.sqrt(var + eps)
        # read back in the data's dtype, so this loop runs in float32 for float32 data
        mu_n, rstd_n = mean[n], rstd[n]
        for c in range(C):
            out[n, c] = (src[n, c] - mu_n) * rstd_n * weight[c] + bias[c]


@parallel_jit
def _layernorm_backward_rows(dout, x, weight, mean, rstd, ds, add_ds, dx, dweight_parts, dbias_parts):
    N, C = x.shape
    n_chunks = dweight_parts.shape[0]
    # dweight and dbias sum over all rows; giving each chunk of rows its own partial sums
    # lets the chunks run in parallel without two cores adding into the same array.
    for chunk in prange(n_chunks):
        for n in range(chunk * N // n_chunks, (chunk + 1) * N // n_chunks):
            mu, r = mean[n], rstd[n]
            g_sum, gxhat_sum = layernorm_grad_sums(dout, x, weight, n, mu, r)
            g_mean = g_sum / C  # mean_C(g), the path through the mean
            gxhat_mean = gxhat_sum / C  # mean_C(g * xhat), the path through rstd
            for c in range(C):  # no sum runs across c here, so this loop is vectorised
                xhat = (x[n, c] - mu) * r
                dweight_parts[chunk, c] += dout[n, c] * xhat
                dbias_parts[chunk, c] += dout[n, c]
                d = r * (dout[n, c] * weight[c] - g_mean - xhat * gxhat_mean)
                dx[n, c] = d + ds[n, c] if add_ds else d  # fused: the residual stream's gradient


def _layernorm(x, a, weight, bias, eps):
    """The wrapper both layernorm forwards share: (s or None, out, mean, rstd)."""
    rows = _as_rows(x)
    dtype = x.dtype
    add_a = a is not None
    a_rows = _as_rows(a.astype(dtype, copy=False)) if add_a else rows
    s = np.empty_like(rows) if add_a else rows  # (s is not written without a)
    out = np.empty_like(rows)
    mean = np.empty(rows.shape[0], dtype=dtype)
    rstd = np.empty(rows.shape[0], dtype=dtype)
    _layernorm_rows(rows, a_rows, add_a, weight.astype(dtype, copy=False), bias.astype(dtype, copy=False),
                    float(eps), s, out, mean, rstd)
    s_out = s.reshape(x.shape) if add_a else None
    return s_out, out.reshape(x.shape), mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])


def _layernorm_grad(dout, ds, x, weight, mean, rstd):
    """The wrapper both layernorm backwards share: (dx [+ ds], dweight, dbias)."""
    dtype = x.dtype
    x_rows = _as_rows(x)
    dout_rows = _as_rows(dout.astype(dtype, copy=False))
    add_ds = ds is not None
    ds_rows = _as_rows(ds.astype(dtype, copy=False)) if add_ds else dout_rows
    N, C = x_rows.shape
    n_chunks = max(1, min(N, 4 * numba.get_num_threads()))
    dx = np.empty_like(x_rows)
    dweight_parts = np.zeros((n_chunks, C))  # float64 partial sums, one row per chunk
    dbias_parts = np.zeros((n_chunks, C))
    _layernorm_backward_rows(dout_rows, x_rows, weight.astype(dtype, copy=False),
                             np.ascontiguousarray(mean, dtype=dtype).reshape(-1),
                             np.ascontiguousarray(rstd, dtype=dtype).reshape(-1),
                             ds_rows, add_ds, dx, dweight_parts, dbias_parts)
    return (dx.reshape(x.shape), dweight_parts.sum(axis=0).astype(dtype),
            dbias_parts.sum(axis=0).astype(dtype))


def layernorm_forward(x, weight, bias, eps=LAYERNORM_EPS):
    """LayerNorm over the last axis; maths in reference.layernorm_forward.
    Returns out (x.shape), mean and rstd (x.shape[:-1])."""
    _, out, mean, rstd = _layernorm(x, None, weight, bias, eps)
    return out, mean, rstd


def layernorm_backward(dout, x, weight, mean, rstd):
    """LayerNorm gradients; maths in reference.layernorm_backward. Returns dx, dweight, dbias."""
    return _layernorm_grad(dout, None, x, weight, mean, rstd)


def residual_layernorm_forward(x, a, weight, bias, eps=LAYERNORM_EPS):
    """s = x + a, out = layernorm(s), in one pass over each row; maths in
    reference.residual_layernorm_forward. Returns s, out, mean, rstd."""
    reference._check_same_shape(x, a)  # one check for both backends
    return _layernorm(x, a, weight, bias, eps)


def residual_layernorm_backward(dout, ds, s, weight, mean, rstd):
    """ds + layernorm's dx in one pass; maths in reference.residual_layernorm_backward.
    Returns ds_total, dweight, dbias."""
    return _layernorm_grad(dout, ds, s, weight, mean, rstd)


# --- GELU, tanh approximation ------------------------------------------------------------
# 0.5 (1 + tanh(u)) equals sigmoid(2u) = 1 / (1 + exp(-2u)), so gelu(x) = x * s with
# s = sigmoid(2u): one exp instead of one tanh. The tanh derivative 1 - tanh(u)^2 becomes
# 4 s (1 - s). Each kernel is one pass over the data, its exp taken by vector_exp inside the
# loop (numba_exp.py): the (B*T, 4C) activations are larger than the L2 cache, so every
# extra trip over them costs. (Before vector_exp, each direction was a Numba pass writing
# the exponents, np.exp and a finishing pass: 7 trips over the array instead of 3. In a
# shakespeare-char step on one thread of a busy machine, forward + backward of the four
# layers took 2.0-2.4 + 2.5-3.2 ms then, 1.4-1.6 + 2.2-2.5 ms after, and 0.9-1.3 + 1.4 ms on an
# idle machine once multiply-adds were fused (jit.py).) Exponents are
# capped at 80 so exp never overflows (exp(80) ~ 5.5e34 fits float32); where the cap bites,
# s < 1e-34 and the result is 0 to working precision. The bias of the layer before GELU is
# added in the same pass (bias_gelu_*), and its gradient, a sum over rows, is taken in the
# backward's pass.


@parallel_jit
def _gelu_rows(h, bias, add_bias, u, out, coeff, cubic, minus_two, one, cap):
    """out = gelu(x) per element, x = h, or with add_bias, x = u = h + bias (written to u,
    the pre-activation the backward pass needs)."""
    for n in prange(h.shape[0]):  # rows are independent: one core per chunk of rows
        for c in range(h.shape[1]):
            x = h[n, c] + bias[c] if add_bias else h[n, c]
            if add_bias:
                u[n, c] = x
            e = vector_exp(min(minus_two * coeff * (x + cubic * x * x * x), cap))  # exp(-2u)
            out[n, c] = x / (one + e)  # x * sigmoid(2u)


@parallel_jit
def _gelu_backward_rows(dy, x, coeff, cubic, three_cubic, minus_two, one, two, cap, dx, dbias_parts, sum_rows):
    """dx = dy * gelu'(x). With sum_rows, also each chunk of rows' sum of dx in dbias_parts
    (float64), as in _layernorm_backward_rows."""
    N, F = x.shape
    n_chunks = dbias_parts.shape[0]
    for chunk in prange(n_chunks):
        for n in range(chunk * N // n_chunks, (chunk + 1) * N // n_chunks):
            for c in range(F):
                xi = x[n, c]
                e = vector_exp(min(minus_two * coeff * (xi + cubic * xi * xi * xi), cap))  # exp(-2u)
                s = one / (one + e)  # = 0.5 (1 + tanh u)
                du_dx = coeff * (one + three_cubic * xi * xi)
                # 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx, with 1 - tanh^2 u = 4 s (1 - s)
                dx[n, c] = dy[n, c] * (s + two * xi * s * (one - s) * du_dx)
            if sum_rows:  # a loop of its own (the row is still in cache): in the loop
                for c in range(F):  # above, the float64 sums stopped it being vectorised
                    dbias_parts[chunk, c] += dx[n, c]


def _gelu_constants(dtype):
    """The constants of both GELU kernels, in the data's dtype (see the module docstring):
    coeff, cubic, 3 cubic, -2, 1, 2, the exponent cap 80."""
    t = dtype.type
    return t(GELU_COEFF), t(GELU_CUBIC), t(3 * GELU_CUBIC), t(-2.0), t(1.0), t(2.0), t(80.0)


def _gelu(h_rows, bias):
    """(out, u or None): the forward pass both GELU kernels share (bias None: no add)."""
    coeff, cubic, _, minus_two, one, _, cap = _gelu_constants(h_rows.dtype)
    add_bias = bias is not None
    out = np.empty_like(h_rows)
    u = np.empty_like(h_rows) if add_bias else out  # (u is not written without a bias)
    bias = np.ascontiguousarray(bias, dtype=h_rows.dtype) if add_bias else out[0]
    _gelu_rows(h_rows, bias, add_bias, u, out, coeff, cubic, minus_two, one, cap)
    return out, (u if add_bias else None)


def _gelu_grad(dy_rows, x_rows, sum_rows):
    """(dx rows, dbias or None): the backward pass both GELU kernels share."""
    coeff, cubic, three_cubic, minus_two, one, two, cap = _gelu_constants(x_rows.dtype)
    dx = np.empty_like(x_rows)
    n_chunks = max(1, min(x_rows.shape[0], 4 * numba.get_num_threads()))
    dbias_parts = np.zeros((n_chunks, x_rows.shape[1] if sum_rows else 1))
    _gelu_backward_rows(dy_rows, x_rows, coeff, cubic, three_cubic, minus_two, one, two, cap, dx,
                        dbias_parts, sum_rows)
    return dx, (dbias_parts.sum(axis=0).astype(x_rows.dtype) if sum_rows else None)


def gelu_forward(x):
    """GELU (tanh approximation); maths in reference.gelu_forward."""
    out, _ = _gelu(_as_rows(x), None)
    return out.reshape(x.shape)


def gelu_backward(dy, x):
    """GELU gradient; maths in reference.gelu_backward."""
    dx, _ = _gelu_grad(_as_rows(dy.astype(x.dtype, copy=False)), _as_rows(x), sum_rows=False)
    return dx.reshape(x.shape)


def bias_gelu_forward(h, bias):
    """gelu(h + bias), the add fused into the same pass; maths in
    reference.bias_gelu_forward. Returns out and u = h + bias."""
    out, u = _gelu(_as_rows(h), bias)
    return out.reshape(h.shape), u.reshape(h.shape)


def bias_gelu_backward(dout, u):
    """du = dout * gelu'(u) and dbias = its sum over rows, in one pass; maths in
    reference.bias_gelu_backward. Returns du, dbias."""
    du, dbias = _gelu_grad(_as_rows(dout.astype(u.dtype, copy=False)), _as_rows(u), sum_rows=True)
    return du.reshape(u.shape), dbias


# --- fused softmax + cross-entropy ------------------------------------------------------


@parallel_jit
def _cross_entropy_losses(shifted_logits, row_sums, targets, ignore_index, losses):
    for n in prange(shifted_logits.shape[0]):
        t = targets[n]
        # -log softmax[t] = log(sum_c exp(shifted_c)) - shifted_t: computed from the logits,
        # not as -log(probs[t]), so it stays exact when probs[t] is tiny
        losses[n] = 0.0 if t == ignore_index else math.log(row_sums[n]) - shifted_logits[n, t]


@parallel_jit
def _cross_entropy_backward_rows(dlosses, probs, targets, ignore_index, dlogits):
    for n in prange(probs.shape[0]):
        t = targets[n]
        scale = 0.0 if t == ignore_index else dlosses[n]  # ignored rows get zero gradient
        for c in range(probs.shape[1]):
            dlogits[n, c] = probs[n, c] * scale
        if t != ignore_index:
            dlogits[n, t] -= scale  # probs - onehot(target), times dloss


def cross_entropy_forward(logits, targets, ignore_index=-100):
    """Per-row loss and softmax probabilities, fused; maths in
    reference.cross_entropy_forward. logits (N, V), targets (N,). Returns losses, probs."""
    rows = _as_rows(logits)
    targets = np.ascontiguousarray(targets, dtype=np.int64).reshape(-1)
    reference._check_targets(targets, rows.shape[0], rows.shape[1], ignore_index)  # one check for both
    shifted = np.empty_like(rows)
    _shift_by_row_max(rows, shifted)  # logits - max per row
    probs = np.exp(shifted)
    row_sums = np.empty(rows.shape[0])
    _normalise_rows(probs, row_sums)  # softmax, and each row's sum of exps
    losses = np.empty(rows.shape[0], dtype=logits.dtype)
    _cross_entropy_losses(shifted, row_sums, targets, ignore_index, losses)
    return losses, probs.reshape(logits.shape)


def cross_entropy_backward(dlosses, probs, targets, ignore_index=-100):
    """d loss / d logits = dloss * (probs - onehot(target)); maths in
    reference.cross_entropy_backward. dlosses may be (N,) or a scalar."""
    rows = _as_rows(probs)
    targets = np.ascontiguousarray(targets, dtype=np.int64).reshape(-1)
    reference._check_targets(targets, rows.shape[0], rows.shape[1], ignore_index)  # one check for both
    dlosses = np.ascontiguousarray(np.broadcast_to(np.asarray(dlosses, dtype=probs.dtype),
                                                   (rows.shape[0],)))
    dlogits = np.empty_like(rows)
    _cross_entropy_backward_rows(dlosses, rows, targets, ignore_index, dlogits)
    return dlogits.reshape(probs.shape)


# --- embedding lookup gradient -----------------------------------------------------------


@serial_jit
def _scatter_add_rows(dout, idx, dW):
    # Serial on purpose: two positions holding the same token add into the same row of dW,
    # and splitting positions across cores would make them race. The loop is cheap anyway
    # (one add per element of dout), unlike np.add.at, which is notoriously slow.
    for n in range(idx.shape[0]):
        for c in range(dout.shape[1]):
            dW[idx[n], c] += dout[n, c]


def embedding_backward(dout, idx, vocab_size):
    """dW[v] = sum of dout[b, t] over positions with idx[b, t] == v; maths in
    reference.embedding_backward. Returns dW (vocab_size, C)."""
    C = dout.shape[-1]
    flat_idx = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
    if flat_idx.size and (flat_idx.min() < 0 or flat_idx.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size})")
    dW = np.zeros((vocab_size, C), dtype=dout.dtype)
    _scatter_add_rows(_as_rows(dout), flat_idx, dW)
    return dW

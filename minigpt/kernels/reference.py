"""Plain-NumPy reference of every hot kernel: the maths, written to be read.

Each function here has a Numba twin in `numba_kernels.py` with the same name, the same
arguments and the same results (tests hold them to 1e-5 in float32). The layers never
import either module directly; they go through `minigpt.kernels`, which picks one.

Conventions:
- Every kernel works in the dtype of its inputs (float32 for training, float64 for
  gradient checks) and never changes it.
- Kernels return new arrays; the layers decide how gradients are accumulated.
- Shapes: N rows of C features for row-wise kernels (leading dimensions may be any
  shape; the last axis is the feature axis); (B, H, T, hs) for attention.
"""

from __future__ import annotations

import math

import numpy as np

LAYERNORM_EPS = 1e-5
GELU_COEFF = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715


# --- matmul -----------------------------------------------------------------------------


def matmul(a, b):
    """a @ b for 2-D arrays. The reference is BLAS itself."""
    return np.matmul(a, b)


# --- softmax over the last axis -----------------------------------------------------------


def softmax_forward(x):
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x). Subtracting the max changes nothing
    mathematically and keeps exp from overflowing."""
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dy, y):
    """dL/dx_i = y_i (dL/dy_i - sum_j y_j dL/dy_j), from the Jacobian dy_i/dx_j = y_i (δ_ij - y_j)."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


# --- layer normalisation over the last axis ---------------------------------------------


def layernorm_forward(x, weight, bias, eps=LAYERNORM_EPS):
    """out = (x - mean) * rstd * weight + bias, with rstd = 1/sqrt(var + eps) (biased var).

    Returns out and the per-row mean and rstd, which the backward pass needs."""
    mean = x.mean(axis=-1)
    centered = x - mean[..., None]
    var = (centered * centered).mean(axis=-1)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = centered * rstd[..., None]
    return xhat * weight + bias, mean, rstd


def layernorm_backward(dout, x, weight, mean, rstd):
    """Gradients of layernorm. With xhat = (x - mean) * rstd and g = dout * weight:

        dbias   = sum over rows of dout
        dweight = sum over rows of dout * xhat
        dx      = rstd * (g - mean_C(g) - xhat * mean_C(g * xhat))

    The two subtracted means are the paths through mean and through rstd: shifting
    all inputs of a row, or scaling them, leaves xhat unchanged."""
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dout * weight
    dx = rstd[..., None] * (
        g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)
    )
    rows = tuple(range(dout.ndim - 1))
    return dx, (dout * xhat).sum(axis=rows), dout.sum(axis=rows)


# --- GELU, tanh approximation (as GPT-2) ------------------------------------------------


def _gelu_u(x):
    """u = sqrt(2/pi) (x + 0.044715 x^3), the argument of GELU's tanh."""
    return GELU_COEFF * (x + GELU_CUBIC * x * x * x)  # x*x*x: float32 x**3 goes through slow powf


def gelu_forward(x):
    """gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)."""
    return 0.5 * x * (1.0 + np.tanh(_gelu_u(x)))


def gelu_backward(dy, x):
    """d gelu/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx,
    du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)."""
    t = np.tanh(_gelu_u(x))
    du_dx = GELU_COEFF * (1.0 + 3.0 * GELU_CUBIC * x * x)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


# --- fused softmax + cross-entropy ------------------------------------------------------


def _check_targets(targets, n_rows, n_classes, ignore_index):
    """Every target is a class id in [0, n_classes) or ignore_index. Both backends call this:
    NumPy would silently read a negative target from the end of the row (-1 is the last
    class), and the Numba loops would read outside it."""
    if targets.shape != (n_rows,):
        raise ValueError(f"targets must have shape ({n_rows},), got {targets.shape}")
    counted = targets[targets != ignore_index]
    if counted.size and (counted.min() < 0 or counted.max() >= n_classes):
        bad = counted[(counted < 0) | (counted >= n_classes)]
        raise ValueError(f"targets must be in [0, {n_classes}) or {ignore_index} (ignored); found {bad[:5].tolist()}")


def cross_entropy_forward(logits, targets, ignore_index=-100):
    """Per-row loss -log softmax(logits)[target] and the softmax probabilities.

    logits (N, V), targets (N,) integers. Rows whose target is ignore_index get loss 0.
    Returns losses (N,) and probs (N, V)."""
    _check_targets(targets, logits.shape[0], logits.shape[1], ignore_index)
    shifted = logits - logits.max(axis=-1, keepdims=True)  # the softmax, kept in its parts
    e = np.exp(shifted)
    total = e.sum(axis=-1)
    probs = e / total[:, None]
    valid = targets != ignore_index
    safe_targets = np.where(valid, targets, 0)
    # log softmax from the shifted logits, not log(probs), so tiny probabilities stay exact
    log_picked = shifted[np.arange(len(targets)), safe_targets] - np.log(total)
    losses = np.where(valid, -log_picked, 0.0)
    return losses, probs


def cross_entropy_backward(dlosses, probs, targets, ignore_index=-100):
    """d loss_n / d logits_n = probs_n - onehot(target_n); the softmax Jacobian and the
    log's 1/p cancel into this famous simple form. Ignored rows get zero gradient."""
    _check_targets(targets, probs.shape[0], probs.shape[1], ignore_index)
    dlogits = probs.copy()
    valid = targets != ignore_index
    rows = np.nonzero(valid)[0]
    dlogits[rows, targets[rows]] -= 1.0
    dlogits *= np.where(valid, dlosses, 0.0).astype(probs.dtype)[:, None]
    return dlogits


# --- causal multi-head attention --------------------------------------------------------


def attention_forward(q, k, v, dropout_mask=None):
    """Causal scaled dot-product attention over (B, H, T, hs) inputs.

    scores = q k^T / sqrt(hs), positions j > i set to -inf; att = softmax(scores);
    out = (att * dropout_mask) v. dropout_mask holds 0 or 1/(1-p), or is None.
    Returns out (B, H, T, hs) and att (B, H, T, T), the pre-dropout probabilities."""
    T, hs = q.shape[-2], q.shape[-1]
    scores = (q @ np.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(hs))  # (B, H, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    scores = np.where(future, -np.inf, scores)
    att = softmax_forward(scores)
    att_dropped = att if dropout_mask is None else att * dropout_mask
    return att_dropped @ v, att


def attention_backward(dout, q, k, v, att, dropout_mask=None):
    """Gradients of attention_forward, walking it backwards:

        out = A v with A = att * mask   ->  dv = A^T dout,  dA = dout v^T
        A = att * mask                  ->  datt = dA * mask
        att = softmax(scores)           ->  dscores = att * (datt - rowsum(datt * att))
        scores = q k^T / sqrt(hs)       ->  dq = dscores k / sqrt(hs),  dk = dscores^T q / sqrt(hs)

    Masked (future) positions have att = 0, so their dscores vanish by themselves."""
    hs = q.shape[-1]
    att_dropped = att if dropout_mask is None else att * dropout_mask
    dv = np.swapaxes(att_dropped, -1, -2) @ dout
    datt = dout @ np.swapaxes(v, -1, -2)
    if dropout_mask is not None:
        datt = datt * dropout_mask
    dscores = softmax_backward(datt, att) * (1.0 / math.sqrt(hs))
    dq = dscores @ k
    dk = np.swapaxes(dscores, -1, -2) @ q
    return dq, dk, dv


# --- attention straight from the qkv projection (fused in the Numba twin) ---------------


def _heads(x, n_head):
    """(B, T, H*hs) -> (B, H, T, hs): head h is channels h*hs .. (h+1)*hs - 1. A view."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def _merge_heads(y):
    """(B, H, T, hs) -> (B, T, H*hs): the heads side by side again."""
    B, H, T, hs = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * hs)


def _check_qkv(qkv, n_head):
    """qkv must be (B, T, 3C) with C split evenly into n_head heads. Both backends call this."""
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * n_head) != 0:
        raise ValueError(f"qkv must be (B, T, 3C) with C divisible by n_head={n_head}, got shape {qkv.shape}")


def _split_qkv(qkv, n_head):
    """(B, T, 3C) -> q, k, v, each (B, H, T, hs): views, no copies."""
    C = qkv.shape[-1] // 3
    return tuple(_heads(qkv[..., i * C:(i + 1) * C], n_head) for i in range(3))


def qkv_attention_forward(qkv, n_head, dropout_mask=None):
    """Causal self-attention read straight from the qkv projection's output.

    qkv (B, T, 3C) holds q, k and v side by side, [q | k | v], each C = H * hs wide and
    split into n_head heads: head h of q is qkv[:, :, h*hs:(h+1)*hs], of k the same
    channels plus C, of v plus 2C. Every head runs attention_forward on its own q, k, v:

        y_h = (softmax(q_h k_h^T / sqrt(hs), future masked) * dropout_mask_h) v_h

    Returns y (B, T, C), the heads' outputs side by side (head h in channels h*hs ..),
    which is what the output projection reads, and att (B, H, T, T), the pre-dropout
    probabilities. Nothing new in the maths: only the layout (no split, no merge copies)."""
    _check_qkv(qkv, n_head)
    q, k, v = _split_qkv(qkv, n_head)  # (B, H, T, hs) each
    y, att = attention_forward(q, k, v, dropout_mask)  # (B, H, T, hs), (B, H, T, T)
    return _merge_heads(y), att


def qkv_attention_backward(dy, qkv, att, n_head, dropout_mask=None):
    """Gradient of qkv_attention_forward: attention_backward for every head, with dq, dk,
    dv written where q, k, v were read. dy (B, T, C) -> dqkv (B, T, 3C) = [dq | dk | dv]."""
    _check_qkv(qkv, n_head)
    q, k, v = _split_qkv(qkv, n_head)
    dq, dk, dv = attention_backward(_heads(dy, n_head), q, k, v, att, dropout_mask)
    return np.concatenate([_merge_heads(d) for d in (dq, dk, dv)], axis=-1)


# --- GELU with the bias before it (fused in the Numba twin) -----------------------------


def bias_gelu_forward(h, bias):
    """out = gelu(u) with u = h + bias: the first MLP layer's bias add and its GELU.

    h (..., F), bias (F,) added to every row. Returns out and u, the pre-activation the
    backward pass needs (gelu' is taken at u)."""
    u = h + bias
    return gelu_forward(u), u


def bias_gelu_backward(dout, u):
    """du = dout * gelu'(u) (gelu_backward), which is also dh, since u = h + bias passes
    gradients through unchanged; and dbias = du summed over all rows (the bias was added
    to every row). Returns du (u's shape) and dbias (F,)."""
    du = gelu_backward(dout, u)
    return du, du.reshape(-1, du.shape[-1]).sum(axis=0)


# --- layernorm with the residual add before it (fused in the Numba twin) ----------------


def _check_same_shape(x, a):
    """x + a must not broadcast: a residual branch returns the stream's own shape. Both
    backends call this."""
    if x.shape != a.shape:
        raise ValueError(f"residual_layernorm_forward: x {x.shape} and a {a.shape} must have the same shape")


def residual_layernorm_forward(x, a, weight, bias, eps=LAYERNORM_EPS):
    """s = x + a (the residual stream plus a branch's output), out = layernorm(s).

    x, a (..., C). Returns s (the new residual stream), out, and the per-row mean and
    rstd of s (layernorm_forward's)."""
    _check_same_shape(x, a)
    s = x + a
    out, mean, rstd = layernorm_forward(s, weight, bias, eps)
    return s, out, mean, rstd


def residual_layernorm_backward(dout, ds, s, weight, mean, rstd):
    """Gradients of residual_layernorm_forward. s reaches the loss two ways: through the
    layernorm (dout) and onward along the residual stream (ds, the gradient arriving from
    above; None if s is used nowhere else). So

        dL/ds = ds + layernorm_backward(dout)'s dx,

    and since s = x + a, dL/dx = dL/da = dL/ds: one array serves both.
    Returns ds_total, dweight, dbias."""
    dx, dweight, dbias = layernorm_backward(dout, s, weight, mean, rstd)
    return (dx if ds is None else ds + dx), dweight, dbias


# --- embedding lookup gradient -----------------------------------------------------------


def embedding_backward(dout, idx, vocab_size):
    """The lookup out[b, t] = W[idx[b, t]] copies rows, so its gradient adds each dout[b, t]
    back into the row it came from: dW[v] = sum over (b, t) with idx[b, t] == v of dout[b, t].
    A token that appears twice gets both contributions (hence add.at, not assignment)."""
    C = dout.shape[-1]
    dW = np.zeros((vocab_size, C), dtype=dout.dtype)
    np.add.at(dW, idx.reshape(-1), dout.reshape(-1, C))
    return dW


# --- AdamW --------------------------------------------------------------------------------


def adamw_update(params, grads, m, v, decay_mask, lr, beta1, beta2, eps, weight_decay, step):
    """One AdamW step, in place on flat float arrays (step counts from 1).

        m = beta1 m + (1 - beta1) g          v = beta2 v + (1 - beta2) g^2
        p = p - lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * decay_mask * p)

    with the bias corrections m_hat = m / (1 - beta1^step), v_hat = v / (1 - beta2^step).
    The decay is decoupled (Loshchilov & Hutter): it shrinks p directly instead of being
    added to the gradient, so Adam's normalisation does not rescale it. decay_mask is 1
    where a parameter is decayed (matrices, embeddings) and 0 elsewhere (biases, layernorm)."""
    m *= beta1
    m += (1.0 - beta1) * grads
    v *= beta2
    v += (1.0 - beta2) * grads * grads
    m_hat = m / (1.0 - beta1**step)
    v_hat = v / (1.0 - beta2**step)
    params -= lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * decay_mask * params)

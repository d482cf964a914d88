"""Causal multi-head attention with Numba (twins of reference.attention_* and
reference.qkv_attention_*; the maths is there).

Attention is matrix products (q k^T, then att v; four products in the backward pass)
around element-wise work on the (T, T) score matrix of every head: scale, causal mask,
softmax, dropout. This module keeps the products on BLAS (np.matmul) and fuses all the
element-wise work into one Numba pass per direction, which visits only the positions a
query may see (j <= i) and spreads the B*H heads across cores.

Three things make the layer's attention cheap beyond that:

- **No copies between the projections and the heads.** The model's layer hands over the
  qkv projection's output (B, T, 3C) as it is. Head h's q is the (T, hs) block at columns
  h*hs.. of it: rows 3C apart, columns adjacent. BLAS reads such a block in place (it
  takes a row stride, its "leading dimension"), so np.matmul multiplies these views
  without copying them; the results are written the same way, each head's y straight into
  its columns of (B, T, C), each dq, dk, dv straight into its columns of dqkv (B, T, 3C).
  (`qkv_attention_*`; `attention_*` take (B, H, T, hs) arrays, for the lessons and tests.)
- **The future is not multiplied.** A block of query rows [s, e) sees keys 0..e-1 only,
  so the products run block by block (QUERY_BLOCK rows each): at T = 256 they do 10/16 of
  the full products' work. At T <= QUERY_BLOCK (the main command's T = 64) there is one
  block, the full product. Smaller blocks skip more of the future but make more, smaller
  BLAS calls: at T = 256 on one thread the whole attention took 0.77x (forward) and
  0.64x (backward) of its time without blocks with blocks of 64, 0.88x and 0.76x with 32.
- **The probabilities are kept, not recomputed.** The backward pass needs att. GPU
  kernels (FlashAttention) recompute it from q and k, because there memory is the scarce
  resource; here the forward keeps att (B*H*T*T numbers, 12 MB per layer at 6L-384) and
  the backward reads it back instead of multiplying q k^T again. Without dropout it is
  the very buffer the scores were computed in.

Why not one fully fused Numba loop per query row (scores -> softmax -> weighted sum, as
FlashAttention does on GPUs)? We wrote it and measured it at GPT-small shapes (T = 64,
hs = 32): BLAS multiplies the full 64 x 64 matrices, wasted upper triangle included,
faster than Numba loops (without `fastmath`) multiply the lower half. On one core the
fused forward took ~1.6x and the fused backward ~2.3x as long as this BLAS + Numba split.

Two measured choices (shakespeare-char, T = 64, hs = 32, 48 heads, one thread):

- **Products without a transposed right operand.** q k^T and dy v^T contract over hs, the
  contiguous axis of both operands, so BLAS would read k (v) transposed; OpenBLAS's kernel
  for that case ("NT") took 5.4 us a head against 3.4 for the plain one. Copying k and v
  transposed once (`_transposed`, 34 us a layer) and multiplying plainly is cheaper: q k^T
  for all heads took 155 us instead of 209.
- **The exps inside the softmax pass.** The forward's softmax is one Numba pass per row
  (max, exp, float64 sum, normalise), its exps taken by vector_exp (numba_exp.py), which
  LLVM vectorises in the loop. Before, it was a Numba pass writing the shifted scores
  (-inf for the future), NumPy's np.exp over each query block's scores, and a second Numba
  pass to normalise. Timed alone with cold caches: at T = 64 the same, 210-300 us a layer
  either way (the 0.8 MB of scores fit in L2, so the extra passes cost little); at
  T = 256 (6L-384: 48 heads, 12.6 MB of scores) 2.2-2.6 ms instead of 3.1-4.4 ms.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from minigpt.kernels.jit import parallel_jit
from minigpt.kernels.numba_exp import vector_exp
from minigpt.kernels.numba_reductions import dot_first, max_first, sum_first
from minigpt.kernels.reference import _check_qkv, _heads, _split_qkv

QUERY_BLOCK = 64  # query rows per BLAS product; a block's rows see keys 0..its last row


@parallel_jit
def _causal_softmax_and_drop(scores, scale, mask, use_mask, att):
    """In place, scores -> the causal softmax of scores * scale over each row's visible keys
    (j <= i), 0 for the future; one pass per row, exps by vector_exp. Reads only j <= i:
    the blocked product left the rest unwritten. Without a mask, scores becomes att (att is
    not used). With one, att gets the softmax (kept for the backward pass) and scores
    becomes att * dropout_mask, the weights that multiply v."""
    n_heads, T, _ = scores.shape
    for h in prange(n_heads):  # heads never interact: one core per chunk of heads
        for i in range(T):
            row = scores[h, i]
            n_keys = i + 1  # causal: query i sees keys 0..i
            # scale > 0 and rounding is monotonic, so max(s_j) * scale is the max of the
            # rounded s_j * scale: the same numbers as scaling first. Subtracting it keeps
            # exp from overflowing, as in softmax.
            shift = max_first(row, n_keys) * scale
            for j in range(n_keys):  # vectorised: no sum runs in it
                row[j] = vector_exp(row[j] * scale - shift)
            inv_total = 1.0 / sum_first(row, n_keys)  # float64 sum, a loop of its own
            if use_mask:
                for j in range(n_keys):
                    att[h, i, j] = row[j] * inv_total
                    row[j] = att[h, i, j] * mask[h, i, j]
                att[h, i, n_keys:] = 0.0
            else:
                for j in range(n_keys):
                    row[j] *= inv_total
            row[n_keys:] = 0.0  # the future gets no weight


@parallel_jit
def _softmax_dropout_backward(datt, att, mask, use_mask, scale, weights):
    """In place, datt -> dscores: back through dropout, softmax and the 1/sqrt(hs) scale,
    visiting only the visible keys (the future's dscores are set to 0). With a mask, also
    weights = att * mask, the matrix that multiplied v in the forward pass (dv needs it;
    without a mask that matrix is att itself). Reads datt only where j <= i."""
    n_heads, T, _ = att.shape
    for h in prange(n_heads):
        for i in range(T):
            d, a = datt[h, i], att[h, i]
            n_keys = i + 1  # the future had att = 0, so its gradient is 0
            if use_mask:
                for j in range(n_keys):
                    d[j] *= mask[h, i, j]  # dropout gates the gradient as it gated att
                for j in range(T):
                    weights[h, i, j] = a[j] * mask[h, i, j]
            # softmax backward: dscores_ij = att_ij (datt_ij - sum_j' att_ij' datt_ij')
            dot = dot_first(a, d, n_keys)
            for j in range(n_keys):
                d[j] = a[j] * (d[j] - dot) * scale
            d[n_keys:] = 0.0


def _query_blocks(T):
    """(start, end) of each block of query rows; the block sees keys 0..end-1."""
    return [(start, min(start + QUERY_BLOCK, T)) for start in range(0, T, QUERY_BLOCK)]


def _transposed(x):
    """x (B, H, T, hs) as a C-contiguous (B, H, hs, T) copy: the right operand of a product
    that contracts over hs. BLAS reads the strided view x.swapaxes(-1, -2) too, but the
    transposed operand ("NT") took ~1.7x as long at T = 64, hs = 32 (5.4 vs 3.4 us a head)
    and the copy costs less than the difference."""
    B, H, T, hs = x.shape
    out = np.empty((B, H, hs, T), dtype=x.dtype)
    np.copyto(out, x.swapaxes(-1, -2))
    return out


def _mask_heads(dropout_mask, shape, dtype):
    """The dropout mask as contiguous (B*H, T, T) in dtype, and whether there is one."""
    if dropout_mask is None:
        return np.ones((1, 1, 1), dtype=dtype), False  # placeholder; never read
    B, H, T, _ = shape
    mask = np.ascontiguousarray(np.broadcast_to(dropout_mask, (B, H, T, T)), dtype=dtype)
    return mask.reshape(B * H, T, T), True


def _attention_core_forward(q, k, v, dropout_mask, y):
    """q, k, v (B, H, T, hs), views BLAS can read in place; writes the output into y (the
    same shape, a view as well). Returns att (B, H, T, T)."""
    B, H, T, hs = q.shape
    dtype = q.dtype
    mask, use_mask = _mask_heads(dropout_mask, q.shape, dtype)
    scores = np.empty((B, H, T, T), dtype=dtype)
    k_t = _transposed(k)  # (B, H, hs, T): q k^T as a plain product (see the module docstring)
    for s, e in _query_blocks(T):  # rows s..e-1 see keys 0..e-1
        np.matmul(q[:, :, s:e], k_t[..., :e], out=scores[:, :, s:e, :e])
    att = np.empty_like(scores) if use_mask else scores  # without dropout: softmax in place
    _causal_softmax_and_drop(scores.reshape(B * H, T, T), dtype.type(1.0 / math.sqrt(hs)), mask, use_mask,
                             att.reshape(B * H, T, T))  # scores: att * mask
    for s, e in _query_blocks(T):
        np.matmul(scores[:, :, s:e, :e], v[:, :, :e], out=y[:, :, s:e])
    return att


def _attention_core_backward(dy, q, k, v, att, dropout_mask, dq, dk, dv):
    """Gradients of _attention_core_forward, written into dq, dk, dv (views, like q, k, v)."""
    B, H, T, hs = q.shape
    dtype = q.dtype
    mask, use_mask = _mask_heads(dropout_mask, q.shape, dtype)
    att = np.ascontiguousarray(att, dtype=dtype)
    dscores = np.empty((B, H, T, T), dtype=dtype)
    v_t = _transposed(v)  # (B, H, hs, T)
    for s, e in _query_blocks(T):  # datt = dy v^T
        np.matmul(dy[:, :, s:e], v_t[..., :e], out=dscores[:, :, s:e, :e])
    weights = np.empty_like(att) if use_mask else att  # what multiplied v: att * mask
    _softmax_dropout_backward(dscores.reshape(B * H, T, T), att.reshape(B * H, T, T), mask, use_mask,
                              dtype.type(1.0 / math.sqrt(hs)), weights.reshape(B * H, T, T))
    for s, e in _query_blocks(T):
        # keys s..e-1 were seen by queries s..T-1 only; queries s..e-1 saw keys 0..e-1
        np.matmul(weights[:, :, s:, s:e].swapaxes(-1, -2), dy[:, :, s:], out=dv[:, :, s:e])  # out = W v
        np.matmul(dscores[:, :, s:, s:e].swapaxes(-1, -2), q[:, :, s:], out=dk[:, :, s:e])  # scores = q k^T
        np.matmul(dscores[:, :, s:e, :e], k[:, :, :e], out=dq[:, :, s:e])


# --- attention over (B, H, T, hs) arrays ----------------------------------------------------


def attention_forward(q, k, v, dropout_mask=None):
    """Causal attention over (B, H, T, hs); maths in reference.attention_forward.
    Returns out (B, H, T, hs) and att (B, H, T, T), the pre-dropout probabilities."""
    if not (q.shape == k.shape == v.shape) or q.ndim < 2:
        raise ValueError(f"q, k, v must share one (..., T, hs) shape, got {q.shape}, "
                         f"{k.shape}, {v.shape}")
    dtype, (T, hs) = q.dtype, q.shape[-2:]
    qh, kh, vh = (np.ascontiguousarray(a, dtype=dtype).reshape(1, -1, T, hs) for a in (q, k, v))
    out = np.empty_like(qh)
    if dropout_mask is not None:
        dropout_mask = np.broadcast_to(dropout_mask, q.shape[:-1] + (T,)).reshape(1, -1, T, T)
    att = _attention_core_forward(qh, kh, vh, dropout_mask, out)
    return out.reshape(q.shape), att.reshape(q.shape[:-1] + (T,))


def attention_backward(dout, q, k, v, att, dropout_mask=None):
    """Gradients of attention_forward; maths in reference.attention_backward.
    Returns dq, dk, dv, each (B, H, T, hs)."""
    dtype, (T, hs) = q.dtype, q.shape[-2:]
    qh, kh, vh, douth = (np.ascontiguousarray(a, dtype=dtype).reshape(1, -1, T, hs) for a in (q, k, v, dout))
    if dropout_mask is not None:
        dropout_mask = np.broadcast_to(dropout_mask, q.shape[:-1] + (T,)).reshape(1, -1, T, T)
    dq, dk, dv = (np.empty_like(qh) for _ in range(3))
    _attention_core_backward(douth, qh, kh, vh, att.reshape(1, -1, T, T), dropout_mask, dq, dk, dv)
    return dq.reshape(q.shape), dk.reshape(q.shape), dv.reshape(q.shape)


# --- attention straight from the qkv projection's output ----------------------------------


def qkv_attention_forward(qkv, n_head, dropout_mask=None):
    """Causal self-attention from the packed (B, T, 3C) projection; maths in
    reference.qkv_attention_forward. Returns y (B, T, C), heads side by side, and att
    (B, H, T, T)."""
    _check_qkv(qkv, n_head)
    qkv = np.ascontiguousarray(qkv)  # (no copy: the projection's output already is)
    B, T, C3 = qkv.shape
    q, k, v = _split_qkv(qkv, n_head)  # (B, H, T, hs) views into qkv
    y = np.empty((B, T, C3 // 3), dtype=qkv.dtype)
    att = _attention_core_forward(q, k, v, dropout_mask, _heads(y, n_head))  # writes y's columns
    return y, att


def qkv_attention_backward(dy, qkv, att, n_head, dropout_mask=None):
    """Gradient of qkv_attention_forward; maths in reference.qkv_attention_backward.
    dy (B, T, C) -> dqkv (B, T, 3C) = [dq | dk | dv]."""
    _check_qkv(qkv, n_head)
    qkv = np.ascontiguousarray(qkv)
    dy = np.ascontiguousarray(dy, dtype=qkv.dtype)
    dqkv = np.empty_like(qkv)
    _attention_core_backward(_heads(dy, n_head), *_split_qkv(qkv, n_head), att, dropout_mask,
                             *_split_qkv(dqkv, n_head))  # dq, dk, dv: views into dqkv
    return dqkv

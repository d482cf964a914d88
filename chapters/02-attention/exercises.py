"""Chapter 2, attention: the exercises.

Six functions, one idea each: a softmax that cannot overflow (2.1) and its backward pass
(2.2); causal scaled dot-product attention (2.3) and its backward pass (2.4); attention
with several heads (2.5); and a measurement of why scores are divided by sqrt(d) (2.6).

Write your answers in exercises.py (in this folder), replacing each
`raise NotImplementedError(...)`, then grade them:

    python -m minigpt grade 02                    # all exercises
    python -m minigpt grade 02 --only softmax     # one of them

Two rules hold for every function: it returns arrays of the dtype it is given (float32 in,
float32 out: a NumPy float64 constant such as np.sqrt(hs), or a float64 array such as a
mask made with np.ones, would silently turn float32 into float64), and it never changes
the arrays it is given (write x = x - m, not x -= m).

The grader checks your backward passes against finite differences of a correct forward
pass, on shapes you have not seen; its report says, for each exercise, passed, not
attempted, or wrong and by how much. Use NumPy only; the chapter's reading
(chapters/02-attention/README.md) derives everything you need.
"""

from __future__ import annotations

import math

import numpy as np


def softmax(x):
    """Exercise 2.1: softmax over the last axis, safe for any finite input.

    x: a float array of any shape (..., N), a single row (N,) included. Returns an array
    of the same shape and dtype whose every row (last axis) is exp(x_i) / sum_j exp(x_j):
    positive, summing to 1. It must not overflow or produce NaN for any finite input:
    large values such as x = [1000, 1001], a row whose values are far apart
    ([-800, 800]), and rows far apart from one another's (one near +1000, one near -1000)."""
    raise NotImplementedError("softmax(x) = softmax(x - c) for any c per row: subtract each row's own max before exp")


def softmax_backward(dy, y):
    """Exercise 2.2: the backward pass of softmax over the last axis.

    y = softmax(x) (the forward's output, shape (..., N)) and dy = dL/dy of the same
    shape and dtype. Returns dL/dx, shape (..., N), in that dtype; y and dy stay as they
    were (a model keeps y for later). Do not form the N x N Jacobian: the formula needs
    one sum per row."""
    raise NotImplementedError('dx_i = y_i (dy_i - sum_j y_j dy_j), the sum over each row (the last axis)')


def causal_attention(q, k, v):
    """Exercise 2.3: causal scaled dot-product attention, every head at once.

    q, k, v: (B, H, T, hs) arrays: queries, keys, values of B sequences, H heads, T
    positions, hs numbers per head. Position t may attend to positions 0..t only.
    Returns (out, att), both of q's dtype:
      att (B, H, T, T): softmax over the last axis of q k^T / sqrt(hs), with the future
                        (key position j > query position t) masked, so att[..., t, j] = 0
                        for j > t and each row sums to 1;
      out (B, H, T, hs): att @ v.
    T = 1 is allowed (each position then sees only itself). You may call your softmax
    from exercise 2.1."""
    raise NotImplementedError('scores = q k^T / sqrt(hs); set the entries above the diagonal to -inf BEFORE the softmax')


def causal_attention_backward(dout, q, k, v, att):
    """Exercise 2.4: the backward pass of causal_attention.

    dout (B, H, T, hs) is dL/dout; q, k, v are the forward's inputs and att its (B, H, T, T)
    attention weights. Returns (dq, dk, dv), each (B, H, T, hs) and of q's dtype; the
    arguments stay as they were. The chain: out = att v, att = softmax(scores),
    scores = q k^T / sqrt(hs). The masked positions need no special care: their att is 0."""
    raise NotImplementedError('dv = att^T dout, datt = dout v^T; softmax backward -> dscores; dq = dscores k / sqrt(hs)')


def multi_head_attention(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head):
    """Exercise 2.5: causal self-attention with n_head heads, as in GPT-2.

    x (B, T, C); attn_weight (C, 3C), attn_bias (3C,); proj_weight (C, C), proj_bias (C,).
      1. qkv = x @ attn_weight + attn_bias, (B, T, 3C): the first C channels are the
         queries, the next C the keys, the last C the values;
      2. head h (of n_head, hs = C // n_head) gets channels h*hs ... (h+1)*hs - 1 of each:
         q, k, v become (B, n_head, T, hs);
      3. y = causal attention of each head (you may call your causal_attention, or
         minigpt.kernels.reference.attention_forward, which does the same);
      4. put the heads side by side again, (B, T, C), head h in channels h*hs ... (h+1)*hs - 1;
      5. return y @ proj_weight + proj_bias, (B, T, C), of x's dtype.
    C is a multiple of n_head; n_head = 1 and T = 1 are allowed."""
    raise NotImplementedError('reshape (B, T, C) to (B, T, n_head, hs), then transpose to (B, n_head, T, hs)')


def max_attention_weight(d, scaled, n_queries=2000, n_keys=16, seed=0):
    """Exercise 2.6 (a measurement): how peaked is softmax(q.k) at dimension d?

    Draw, in this order, from rng = np.random.default_rng(seed):
        q = rng.standard_normal((n_queries, d))            one query per row
        k = rng.standard_normal((n_queries, n_keys, d))    n_keys keys for each query
    Score each query against its own keys, scores[i, j] = q[i] . k[i, j], divided by
    sqrt(d) if `scaled`; take the softmax over the n_keys scores of each query; return
    the mean over queries of the largest weight, as a Python float. It is 1/n_keys for a
    uniform softmax and 1 for a one-hot one."""
    raise NotImplementedError('scores = np.einsum("id,ijd->ij", q, k); softmax and max along axis 1; then the mean')

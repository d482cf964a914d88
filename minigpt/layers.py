"""The layers of a GPT, each a forward/backward pair side by side.

Every forward returns `(out, cache)`; the matching backward takes `(dout, cache)` and
returns the gradient for each floating-point array argument of the forward, in order:
`dx, *dparams = x_backward(dout, cache)` (None for an optional bias that was None). Caches are plain tuples of what the backward
needs. The hot maths goes through `minigpt.kernels` (NumPy reference or Numba).

Notation: B batch, T time (sequence length), C channels (n_embd), H heads,
hs = C / H head size, V vocabulary size, K classes, r LoRA rank. `dy` is dLoss/dy for any y.
"""

from __future__ import annotations

import numpy as np

from minigpt import kernels

# --- token + position embedding ---------------------------------------------------------


def embedding_forward(idx, wte, wpe):
    """x[b, t] = wte[idx[b, t]] + wpe[t].

    idx (B, T) integers, wte (V, C), wpe (block_size, C)  ->  x (B, T, C)"""
    T = idx.shape[1]
    out = wte[idx] + wpe[:T]  # (B, T, C)
    return out, (idx, wte.shape[0], wpe.shape[0])


def embedding_backward(dout, cache):
    """A lookup copies rows, so its gradient scatters dout back to the rows it read:
    dwte[v] = sum of dout[b, t] over all (b, t) with idx[b, t] == v, and
    dwpe[t] = sum over the batch of dout[b, t] (zero for positions beyond T).
    Returns dwte (V, C), dwpe (block_size, C); idx gets no gradient."""
    idx, vocab_size, block_size = cache
    T, C = dout.shape[1], dout.shape[2]
    dwte = kernels.embedding_backward(dout, idx, vocab_size)
    dwpe = np.zeros((block_size, C), dtype=dout.dtype)
    dwpe[:T] = dout.sum(axis=0)
    return dwte, dwpe


# --- linear (Hugging Face GPT-2's Conv1D layout: weight is (in, out)) -------------------


def linear_forward(x, weight, bias=None):
    """out = x @ weight + bias.   x (..., in), weight (in, out), bias (out,) -> (..., out)"""
    x2d = x.reshape(-1, x.shape[-1])  # one BLAS call for all B*T rows
    out = kernels.matmul(x2d, weight)
    if bias is not None:
        out += bias
    return out.reshape(*x.shape[:-1], weight.shape[1]), (x, weight, bias is not None)


def linear_backward(dout, cache):
    """For out = x W + b:  dx = dout W^T,  dW = x^T dout (summed over rows),  db = sum of dout.
    Returns dx, dweight, dbias (None when the layer has no bias)."""
    x, weight, has_bias = cache
    dout2d = dout.reshape(-1, dout.shape[-1])
    x2d = x.reshape(-1, x.shape[-1])
    dx = kernels.matmul(dout2d, weight.T).reshape(x.shape)
    dweight = kernels.matmul(x2d.T, dout2d)
    return dx, dweight, (dout2d.sum(axis=0) if has_bias else None)


# --- LoRA: a trainable low-rank change of a frozen linear weight -----------------------


def lora_forward(weight, lora_A, lora_B, scale):
    """The effective weight of a linear layer with a LoRA adapter (Hu et al., 2021):

        W_eff = W + scale * A @ B,     scale = alpha / r

    weight W (in, out) frozen, lora_A (in, r), lora_B (r, out) -> W_eff (in, out).
    A starts small and random and B at zero, so W_eff = W until B has learned something.
    A @ B has rank <= r: the fine-tuning may only move W within an r-dimensional subspace,
    with r (in + out) parameters instead of in * out.

    This is the weight-space reading: the linear layer then runs as usual on W_eff, so
    attention and the MLP need no change at all. The activation-space reading computes
    the same output without forming W_eff,
        x W_eff + b = x W + b + scale * (x A) B,
    cheaper when only a few rows x pass (one new token in the KV-cache decoder), dearer
    when many do (training: x A costs B*T*in*r per step, A @ B only in*r*out once)."""
    delta = kernels.matmul(lora_A, lora_B)  # (in, out), rank <= r
    return weight + scale * delta, (lora_A, lora_B, scale)


def lora_backward(dweight_eff, cache):
    """Given dW_eff = dLoss/dW_eff (linear_backward's dweight for W_eff, x^T dout), the
    chain rule through W_eff = W + s A B, entry by entry
        W_eff[i, j] = W[i, j] + s sum_k A[i, k] B[k, j]:
        dW = dW_eff                   (W enters with coefficient 1)
        dA[i, k] = s sum_j dW_eff[i, j] B[k, j]   ->  dA = s dW_eff B^T   (in, r)
        dB[k, j] = s sum_i A[i, k] dW_eff[i, j]   ->  dB = s A^T dW_eff   (r, out)
    In activation space (out = x W + b + s (x A) B, u = x A) the same gradients read
    dB = s u^T dout and dA = s x^T (dout B^T); substituting dW_eff = x^T dout shows they
    are these. Returns dweight, dlora_A, dlora_B."""
    lora_A, lora_B, scale = cache
    dA = scale * kernels.matmul(dweight_eff, lora_B.T)  # (in, r)
    dB = scale * kernels.matmul(lora_A.T, dweight_eff)  # (r, out)
    return dweight_eff, dA, dB


# --- layer normalisation -----------------------------------------------------------------


def layernorm_forward(x, weight, bias=None):
    """Normalise each row of x (..., C) to mean 0 and variance 1, then scale and shift:
    out = (x - mean) / sqrt(var + 1e-5) * weight + bias."""
    shift = bias if bias is not None else np.zeros_like(weight)
    out, mean, rstd = kernels.layernorm_forward(x, weight, shift)
    return out, (x, weight, mean, rstd, bias is not None)


def layernorm_backward(dout, cache):
    """With xhat = (x - mean) * rstd and g = dout * weight (see kernels/reference.py):
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dweight = sum(dout * xhat),
    dbias = sum(dout), the sums over all rows. Returns dx, dweight, dbias (None without bias)."""
    x, weight, mean, rstd, has_bias = cache
    dx, dweight, dbias = kernels.layernorm_backward(dout, x, weight, mean, rstd)
    return dx, dweight, (dbias if has_bias else None)


def residual_layernorm_forward(x, a, weight, bias=None):
    """A residual connection and the layernorm that reads its result, together:

        s = x + a                  (the residual stream x plus a branch's output a)
        out = layernorm(s)         (as layernorm_forward)

    x, a (B, T, C). Returns s, the residual stream from here on, out, and the cache.
    The same as `s = x + a; out, cache = layernorm_forward(s, weight, bias)`, in one pass
    over the rows instead of two (kernels.residual_layernorm_forward)."""
    shift = bias if bias is not None else np.zeros_like(weight)
    s, out, mean, rstd = kernels.residual_layernorm_forward(x, a, weight, shift)
    return s, out, (s, weight, mean, rstd, bias is not None)


def residual_layernorm_backward(dout, ds, cache):
    """s feeds the layernorm (gradient dout at its output) and the rest of the residual
    stream (gradient ds, arriving from above), so dL/ds = ds + layernorm's dx; and since
    s = x + a, that one array is the gradient of both x and a. Returns it, dweight, dbias
    (None without bias). The same as `ds + layernorm_backward(dout, cache)[0]`, in one pass."""
    s, weight, mean, rstd, has_bias = cache
    dx, dweight, dbias = kernels.residual_layernorm_backward(dout, ds, s, weight, mean, rstd)
    return dx, dweight, (dbias if has_bias else None)


# --- GELU --------------------------------------------------------------------------------


def gelu_forward(x):
    """gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), elementwise."""
    return kernels.gelu_forward(x), x


def gelu_backward(dout, cache):
    """dx = dout * gelu'(x), with gelu' written out in kernels/reference.py."""
    return (kernels.gelu_backward(dout, cache),)


def bias_gelu_forward(h, bias=None):
    """a = gelu(h + bias): the bias of the linear layer before a GELU, added in the GELU's
    own pass over the data (kernels.bias_gelu_forward) instead of a pass of its own.
    h (..., F), bias (F,) added to every row, or None for gelu(h)."""
    if bias is None:
        return kernels.gelu_forward(h), (h, False)
    a, u = kernels.bias_gelu_forward(h, bias)  # u = h + bias, where gelu' will be taken
    return a, (u, True)


def bias_gelu_backward(dout, cache):
    """With u = h + bias:  dh = dout * gelu'(u),  dbias = dh summed over all rows (the bias
    was added to every row), in the same pass. Returns dh, dbias (None without bias)."""
    u, has_bias = cache
    if not has_bias:
        return kernels.gelu_backward(dout, u), None
    return kernels.bias_gelu_backward(dout, u)


# --- dropout -----------------------------------------------------------------------------


def dropout_mask(shape, p, rng, dtype):
    """Inverted dropout: each entry is 0 with probability p, else 1/(1-p), so the expected
    output equals the input and nothing needs rescaling at evaluation time.
    Returns None when there is nothing to drop (p == 0)."""
    if p == 0.0:
        return None
    keep = rng.random(shape, dtype=dtype) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def dropout_forward(x, mask):
    """out = x * mask (mask from dropout_mask, or None for identity)."""
    return (x if mask is None else x * mask), mask


def dropout_backward(dout, mask):
    """The mask is a constant factor, so dx = dout * mask."""
    return (dout if mask is None else dout * mask,)


# --- MLP: linear -> GELU -> linear ------------------------------------------------------


def mlp_forward(x, fc_weight, fc_bias, proj_weight, proj_bias):
    """out = gelu(x @ fc_weight + fc_bias) @ proj_weight + proj_bias.
    x (B, T, C), fc_weight (C, 4C), proj_weight (4C, C). The first bias is added by the
    GELU's kernel (bias_gelu_forward), which passes over the (B, T, 4C) activations anyway."""
    h, fc_cache = linear_forward(x, fc_weight)  # (B, T, 4C), x @ fc_weight
    a, gelu_cache = bias_gelu_forward(h, fc_bias)  # (B, T, 4C), gelu(h + fc_bias)
    out, proj_cache = linear_forward(a, proj_weight, proj_bias)  # (B, T, C)
    return out, (fc_cache, gelu_cache, proj_cache)


def mlp_backward(dout, cache):
    """The chain rule through the three steps in reverse.
    Returns dx, dfc_weight, dfc_bias, dproj_weight, dproj_bias."""
    fc_cache, gelu_cache, proj_cache = cache
    da, dproj_weight, dproj_bias = linear_backward(dout, proj_cache)
    dh, dfc_bias = bias_gelu_backward(da, gelu_cache)
    dx, dfc_weight, _ = linear_backward(dh, fc_cache)
    return dx, dfc_weight, dfc_bias, dproj_weight, dproj_bias


# --- causal multi-head self-attention ----------------------------------------------------


def attention_forward(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head, att_mask=None):
    """Causal self-attention: every position attends to itself and the positions before it.

    qkv = x @ attn_weight + attn_bias, split into H heads of size hs;
    y_h = softmax(q_h k_h^T / sqrt(hs), future masked) v_h  (attention dropout att_mask);
    out = concat_h(y_h) @ proj_weight + proj_bias.
    x (B, T, C), attn_weight (C, 3C), proj_weight (C, C), att_mask None or (B, H, T, T).

    The split into heads and the concatenation are views, not copies: the kernel reads
    each head's q, k, v straight out of qkv's columns and writes y_h into concat's
    (kernels/reference.py: qkv_attention_forward, and attention_forward for one head)."""
    qkv, qkv_cache = linear_forward(x, attn_weight, attn_bias)  # (B, T, 3C): [q | k | v]
    y, att = kernels.qkv_attention_forward(qkv, n_head, att_mask)  # (B, T, C) = concat_h(y_h), (B, H, T, T)
    out, proj_cache = linear_forward(y, proj_weight, proj_bias)  # (B, T, C)
    return out, (qkv_cache, qkv, att, att_mask, n_head, proj_cache)


def attention_backward(dout, cache):
    """Back through the projection, the per-head attention (maths in
    kernels/reference.py:attention_backward; dq, dk, dv land in dqkv's columns, where
    q, k, v were read) and the q, k, v projection.
    Returns dx, dattn_weight, dattn_bias, dproj_weight, dproj_bias."""
    qkv_cache, qkv, att, att_mask, n_head, proj_cache = cache
    dy, dproj_weight, dproj_bias = linear_backward(dout, proj_cache)  # (B, T, C)
    dqkv = kernels.qkv_attention_backward(dy, qkv, att, n_head, att_mask)  # (B, T, 3C): [dq | dk | dv]
    dx, dattn_weight, dattn_bias = linear_backward(dqkv, qkv_cache)
    return dx, dattn_weight, dattn_bias, dproj_weight, dproj_bias


# --- classification: pool the last real token, then a linear head --------------------


def last_token_forward(h, lengths):
    """The hidden state of each sequence's last non-padding token.

    h (B, T, C), lengths (B,) integers in [1, T]: sequence b holds lengths[b] real tokens
    followed by padding. Returns pooled (B, C) = h[b, lengths[b] - 1].

    In a causal model only the last real token has read the whole text (every earlier
    position sees just its prefix), and padding to the right of it cannot change it: so
    this one row summarises the sequence, whatever the padding token is."""
    lengths = np.asarray(lengths)
    B, T = h.shape[:2]
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be ({B},) integers, one per sequence, got {lengths.dtype} {lengths.shape}")
    if lengths.min() < 1 or lengths.max() > T:
        raise ValueError(f"lengths must lie in [1, T={T}], got values from {lengths.min()} to {lengths.max()}")
    rows = np.arange(B)
    return h[rows, lengths - 1], (rows, lengths - 1, h.shape)  # (B, C)


def last_token_backward(dpooled, cache):
    """A gather's gradient is a scatter: dh[b, lengths[b] - 1] = dpooled[b], zero at every
    other position (their values never reached the output). Returns (dh,), (B, T, C)."""
    rows, last, h_shape = cache
    dh = np.zeros(h_shape, dtype=dpooled.dtype)
    dh[rows, last] = dpooled  # one row per sequence: no two writes land on the same place
    return (dh,)


def classifier_head_forward(h, lengths, weight, bias=None):
    """A classifier on top of a GPT body: the last real token's hidden state through a
    linear layer, logits[b] = h[b, lengths[b] - 1] @ weight + bias.

    h (B, T, C), lengths (B,), weight (C, K), bias (K,) -> logits (B, K) for K classes.
    (Its loss is cross_entropy_forward(logits, labels) with labels (B,).)"""
    pooled, pool_cache = last_token_forward(h, lengths)  # (B, C)
    logits, linear_cache = linear_forward(pooled, weight, bias)  # (B, K)
    return logits, (pool_cache, linear_cache)


def classifier_head_backward(dlogits, cache):
    """Back through the linear layer, then the pooling's scatter.
    Returns dh (B, T, C), dweight (C, K), dbias (K,) (None without bias)."""
    pool_cache, linear_cache = cache
    dpooled, dweight, dbias = linear_backward(dlogits, linear_cache)
    (dh,) = last_token_backward(dpooled, pool_cache)
    return dh, dweight, dbias


# --- softmax cross-entropy ---------------------------------------------------------------


def cross_entropy_forward(logits, targets, ignore_index=-100):
    """Mean of -log softmax(logits)[target] over the targets that are not ignore_index.

    logits (..., V), targets (...) integers  ->  loss (a 0-d array), cache.
    If every target is ignored the loss is 0 and so is its gradient."""
    V = logits.shape[-1]
    flat_targets = targets.reshape(-1)
    losses, probs = kernels.cross_entropy_forward(logits.reshape(-1, V), flat_targets, ignore_index)
    n_valid = max(int(np.count_nonzero(flat_targets != ignore_index)), 1)
    loss = losses.sum(dtype=np.float64) / n_valid
    return logits.dtype.type(loss), (probs, flat_targets, n_valid, logits.shape, ignore_index)


def cross_entropy_backward(dloss, cache):
    """d(mean loss)/d logits_n = (probs_n - onehot(target_n)) / n_valid for counted rows,
    0 for ignored ones. dloss is the upstream scalar (1.0 when this is the final loss)."""
    probs, flat_targets, n_valid, logits_shape, ignore_index = cache
    dlosses = probs.dtype.type(dloss / n_valid)  # the same for every row: the kernels broadcast it
    dlogits = kernels.cross_entropy_backward(dlosses, probs, flat_targets, ignore_index)
    return (dlogits.reshape(logits_shape),)

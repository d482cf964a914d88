"""Generating text: a KV cache for incremental decoding, and the sampling rules.

A GPT predicts the next token from all the tokens before it. Generating n tokens
naively runs the whole model n times on an ever longer context, recomputing the keys
and values of every earlier position each time, although they never change: position
j's key depends only on tokens 0..j (attention is causal). The KV cache keeps them.
Each step then feeds only the newest token through the network; its query attends
over the cached keys and values. A step costs one token's matmuls plus attention over
T cached positions, instead of all T tokens' matmuls and a T x T attention.

    prompt  ──forward_with_cache──> logits of every prompt position; cache = K, V of the prompt
    token   ──forward_with_cache──> logits of 1 position; cache grows by one position
    ...

The forward pass here is inference-only, written picoGPT-style straight from the
model's weights and the kernels: no backward, no caches for gradients, no dropout.
It reads `model.effective_params()`, the weights `model.forward` computes with (LoRA
adapters folded in, when the model has them). Tests hold its logits equal to
`model.forward`'s, with and without adapters.

Sampling turns the last position's logits into a token id:
temperature (divide the logits; 0 means greedy argmax), top-k (keep the k most
likely tokens), top-p / nucleus (keep the smallest set of most likely tokens whose
probability mass reaches p), then a draw from what is left.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from minigpt import kernels, layers

# --- the KV cache ---------------------------------------------------------------------


class KVCache:
    """Keys and values of every layer for up to `block_size` positions.

    keys[i], values[i]: (B, H, block_size, hs) for layer i, filled in positions
    0..length-1. Preallocated once, so appending a position is a copy, not a
    reallocation of the whole history.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, block_size: int, head_size: int,
                 dtype=np.float32):
        shape = (n_layer, batch_size, n_head, block_size, head_size)
        self.keys = np.zeros(shape, dtype=dtype)  # (L, B, H, block, hs)
        self.values = np.zeros(shape, dtype=dtype)  # (L, B, H, block, hs)
        self.block_size = block_size
        self.length = 0  # positions filled so far (the same for every layer once a step ends)

    @classmethod
    def for_model(cls, model, batch_size: int) -> KVCache:
        c = model.config
        return cls(c.n_layer, batch_size, c.n_head, c.block_size, c.n_embd // c.n_head,
                   dtype=model.params["wte.weight"].dtype)

    def append(self, layer: int, k, v):
        """Store the new positions' k, v (B, H, T_new, hs) for `layer`; return all of that
        layer's keys and values so far, (B, H, length + T_new, hs) each (views, no copy)."""
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def reset(self) -> None:
        self.length = 0  # the old entries are simply overwritten


# --- the forward pass with a cache ---------------------------------------------------


def _layernorm(x, p, name):
    out, _ = layers.layernorm_forward(x, p[name + ".weight"], p.get(name + ".bias"))
    return out  # the backward cache is simply dropped: inference only


def _linear(x, p, name):
    out, _ = layers.linear_forward(x, p[name + ".weight"], p.get(name + ".bias"))
    return out


def _attention(x, p, name, layer, cache, n_head):
    """Causal self-attention of the new positions over every cached position plus themselves."""
    B, T, C = x.shape
    hs = C // n_head
    start = cache.length
    qkv = _linear(x, p, name + ".c_attn")  # (B, T, 3C)
    q, k, v = qkv.reshape(B, T, 3, n_head, hs).transpose(2, 0, 3, 1, 4)  # (B, H, T, hs) each
    k_all, v_all = cache.append(layer, k, v)  # (B, H, start+T, hs)
    scores = (q @ k_all.swapaxes(-1, -2)) * (1.0 / math.sqrt(hs))  # (B, H, T, start+T)
    if T > 1:  # a single new token is the newest position and may look at everything
        # New position t sits at absolute position start+t and may look at 0..start+t only.
        future = np.triu(np.ones((T, start + T), dtype=bool), k=start + 1)  # (T, start+T)
        scores[..., future] = -np.inf
    att = kernels.softmax_forward(scores)  # (B, H, T, start+T)
    y = (att @ v_all).transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C), heads side by side
    return _linear(y, p, name + ".c_proj")  # (B, T, C)


def _mlp(x, p, name):
    out, _ = layers.mlp_forward(x, p[name + ".c_fc.weight"], p.get(name + ".c_fc.bias"),
                                p[name + ".c_proj.weight"], p.get(name + ".c_proj.bias"))
    return out  # (B, T, C)


def forward_with_cache(model, idx_new, cache: KVCache, params: dict | None = None):
    """Logits (B, T_new, V) for the tokens idx_new (B, T_new), which continue the
    sequence whose keys and values are already in `cache` (cache.length positions).

    Appends the new positions to the cache. The new tokens' positions are
    cache.length .. cache.length + T_new - 1; the total must stay within block_size
    (the position embedding has no row beyond it). params: the weights to use, by
    default model.effective_params() (`generate` computes them once for all its steps,
    since folding LoRA adapters in costs a matmul per adapted layer).
    """
    p, config = (model.effective_params() if params is None else params), model.config
    T = idx_new.shape[1]
    start = cache.length
    if start + T > cache.block_size:
        raise ValueError(f"KV cache holds {start} positions; {T} more would exceed "
                         f"block_size {cache.block_size}")
    # The new tokens sit at positions start..start+T-1: hand the embedding those rows of wpe.
    x, _ = layers.embedding_forward(idx_new, p["wte.weight"], p["wpe.weight"][start:start + T])
    for i in range(config.n_layer):
        h = f"h.{i}"
        x = x + _attention(_layernorm(x, p, h + ".ln_1"), p, h + ".attn", i, cache, config.n_head)
        x = x + _mlp(_layernorm(x, p, h + ".ln_2"), p, h + ".mlp")  # (B, T, C)
    x = _layernorm(x, p, "ln_f")  # (B, T, C)
    cache.length = start + T
    logits, _ = layers.linear_forward(x, p["wte.weight"].T)  # (B, T, V): head tied to wte
    return logits


# --- turning logits into a token ------------------------------------------------------


def validate_sampling(temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None) -> None:
    """Raise ValueError naming the first bad sampling setting."""
    if not (temperature >= 0.0 and math.isfinite(temperature)):  # also rejects NaN
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and (int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1, got {top_k}")
    if top_p is not None and not (0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def _descending(x):
    """Indices sorting each row of x from largest to smallest; ties keep the lower index
    first, as argmax does (a stable sort of -x)."""
    return np.argsort(-x, axis=-1, kind="stable")


def top_k_mask(logits, k: int):
    """Boolean mask (B, V) of exactly the k largest logits of each row (ties to lower ids)."""
    order = _descending(logits)  # (B, V)
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :k], True, axis=-1)
    return keep


# Cumulative sums pick up rounding error (~1e-16 per term in float64); without this
# slack a set whose mass is exactly p could be judged a hair short of it.
_TOP_P_SLACK = 1e-12


def top_p_mask(probs, p: float):
    """Boolean mask (B, V) of the nucleus: the smallest set of tokens, taken in order of
    decreasing probability, whose total probability is >= p.

    Sort descending, take the cumulative sum, and keep tokens up to and including the
    first one where the sum reaches p. Among equal probabilities the lower id comes
    first, so the set is unique. p = 1 keeps every token of nonzero probability.
    """
    order = _descending(probs)  # (B, V)
    sorted_probs = np.take_along_axis(probs, order, axis=-1)  # (B, V)
    mass = np.cumsum(sorted_probs, axis=-1)  # (B, V)
    mass_before = mass - sorted_probs  # mass of the tokens ranked above each token
    # A token is needed while the tokens above it have not reached p yet.
    keep_sorted = (mass_before < p - _TOP_P_SLACK) & (sorted_probs > 0)
    keep_sorted[:, 0] = True  # the most likely token is always kept
    keep = np.zeros(probs.shape, dtype=bool)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return keep


def sampling_probs(logits, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None):
    """The distribution (B, V), float64, that `sample_next` draws from (temperature > 0).

    Order of the filters, as in Hugging Face: temperature, then top-k, then top-p on the
    renormalised top-k distribution (nanoGPT has the first two, in this order)."""
    z = np.asarray(logits, dtype=np.float64) / temperature  # (B, V)
    if top_k is not None and top_k < z.shape[-1]:
        z = np.where(top_k_mask(z, top_k), z, -np.inf)
    probs = kernels.softmax_forward(z)  # (B, V); exp(-inf) = 0: masked tokens get exactly 0
    if top_p is not None and top_p < 1.0:
        probs = np.where(top_p_mask(probs, top_p), probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def sample_next(logits, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None):
    """One token id per row of logits (B, V): returns (B,) int64.

    temperature 0 is greedy decoding: the argmax, with top_k and top_p irrelevant."""
    validate_sampling(temperature, top_k, top_p)
    if temperature == 0.0:
        return np.argmax(logits, axis=-1)
    rng = np.random.default_rng() if rng is None else rng
    probs = sampling_probs(logits, temperature, top_k, top_p)  # (B, V)
    # Inverse-CDF draw: the first token whose cumulative probability reaches u.
    # u lies in (0, 1] (1 - random()), so a token of probability 0 is never chosen.
    cdf = np.cumsum(probs, axis=-1)  # (B, V)
    u = (1.0 - rng.random(len(cdf)))[:, None] * cdf[:, -1:]  # (B, 1)
    # u <= cdf[-1], so at least the last entry is not below u: ids <= V - 1.
    return (cdf < u).sum(axis=-1)  # (B,)


# --- the generation loop ----------------------------------------------------------------


def generate(model, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, rng: np.random.Generator | int | None = None,
             use_cache: bool = True, on_token: Callable[[np.ndarray], None] | None = None):
    """Extend idx (B, T) by max_new_tokens sampled tokens; returns (B, T + max_new_tokens).

    The model sees at most block_size tokens: once the sequence is longer, it is
    conditioned on the last block_size tokens only. With the cache this needs care,
    because the position embeddings are absolute: when the window slides by one, every
    cached key and value was computed at a position that is now off by one. The simple,
    correct rule used here: while the sequence fits, feed one token per step; when the
    cache is full, rebuild it from the cropped context with one full forward pass. So
    beyond block_size each step costs a full forward, like decoding without a cache.

    rng: a Generator or an integer seed (same seed -> same samples). on_token, if given,
    is called with the new ids (B,) after each step, for streaming output. Dropout is
    switched off while generating; the model's train/eval mode is restored afterwards.
    """
    validate_sampling(temperature, top_k, top_p)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    # Not model._check_inputs: that one rejects T > block_size, and a longer prompt is
    # fine here (it is cropped to the last block_size tokens).
    idx = np.asarray(idx)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"idx must hold integer token ids, got dtype {idx.dtype}")
    if idx.ndim != 2 or idx.size == 0:
        raise ValueError(f"idx must be a non-empty (B, T) array of token ids, got shape {idx.shape}")
    V = model.config.vocab_size
    if idx.min() < 0 or idx.max() >= V:
        raise ValueError(f"token ids must be in [0, {V}), got ids from {idx.min()} to {idx.max()}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    block_size = model.config.block_size
    # no dropout while sampling; many tiny kernel calls (see kernels.single_threaded)
    with model.evaluating(), kernels.single_threaded():
        B, T = idx.shape
        out = np.empty((B, T + max_new_tokens), dtype=idx.dtype)  # the growing sequence
        out[:, :T] = idx
        cache = KVCache.for_model(model, B) if use_cache else None
        params = model.effective_params()  # the same for every step
        fed = 0  # how many tokens of the sequence the cache has seen
        for t in range(T, T + max_new_tokens):
            if not use_cache:
                logits, _ = model.forward(out[:, max(0, t - block_size):t])  # (B, <=block, V)
            elif cache.length + (t - fed) <= block_size:
                logits = forward_with_cache(model, out[:, fed:t], cache, params)  # only unseen tokens
            else:
                cache.reset()  # full: rebuild from the last block_size tokens
                logits = forward_with_cache(model, out[:, t - block_size:t], cache, params)
            fed = t
            next_ids = sample_next(logits[:, -1, :], temperature, top_k, top_p, rng)  # (B,)
            out[:, t] = next_ids
            if on_token is not None:
                on_token(next_ids)
        return out

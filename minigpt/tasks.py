"""A synthetic task a tiny GPT learns in seconds, with attention heads that can be read.

Chapter 2 trains on it to look inside a model. Each sequence is a few random tokens (a
prefix of random length), then a segment of `period` random tokens repeated until the
sequence is full:

    7 30 | 12 5 19 4 | 12 5 19 4 | 12 5 ...        prefix of 2, period 4

The tokens of the prefix and of the segment are all different, so once a token comes
back, the next token is known: it is the one that followed it last time. Nothing else can
be predicted, so only those positions are targets (the rest are -100, which the loss
ignores). Neither the prefix nor the period can be read off the positions, so a model
must find the earlier occurrence of the current token by its content: the job of an
induction head (Olsson et al., 2022, "In-context learning and induction heads").

The two measurements below say where a head looks, as mean attention weights.
"""

from __future__ import annotations

import numpy as np

IGNORE = -100  # the target of a position whose next token cannot be predicted


def repeated_segments(rng, batch_size: int, seq_len: int, vocab_size: int, min_period: int = 3,
                      max_period: int = 8, max_prefix: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A batch of the task: idx (B, T) token ids and targets (B, T), both int64.

    Per sequence, the prefix length is uniform in [0, max_prefix] and the period uniform in
    [min_period, max_period]; targets[b, t] = idx[b, t + 1] (the token after t, generated
    one step past the end for the last position) where the token at t occurred before,
    else -100."""
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("vocab_size", vocab_size),
                        ("min_period", min_period), ("max_period", max_period)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(max_prefix, (int, np.integer)) or max_prefix < 0:
        raise ValueError(f"max_prefix must be an integer >= 0, got {max_prefix!r}")
    if min_period > max_period:
        raise ValueError(f"min_period ({min_period}) must not exceed max_period ({max_period})")
    if vocab_size < max_prefix + max_period:
        raise ValueError(f"vocab_size ({vocab_size}) must be at least max_prefix + max_period "
                         f"({max_prefix + max_period}): the prefix and the segment use distinct tokens")
    if seq_len <= max_prefix + max_period:
        raise ValueError(f"seq_len ({seq_len}) must exceed max_prefix + max_period ({max_prefix + max_period}), "
                         f"so that every sequence has a repeat to predict")
    idx = np.empty((batch_size, seq_len), dtype=np.int64)
    targets = np.full((batch_size, seq_len), IGNORE, dtype=np.int64)
    for b in range(batch_size):
        prefix = int(rng.integers(0, max_prefix + 1))
        period = int(rng.integers(min_period, max_period + 1))
        tokens = rng.permutation(vocab_size)[:prefix + period]  # all distinct
        row = np.concatenate([tokens[:prefix], np.resize(tokens[prefix:], seq_len + 1 - prefix)])  # (T + 1,)
        idx[b] = row[:seq_len]
        first_repeat = prefix + period  # the first position whose token occurred before
        targets[b, first_repeat:] = row[first_repeat + 1:]
    return idx, targets


def attention_back(att: np.ndarray, k: int) -> np.ndarray:
    """How much each head looks exactly k positions back: the mean of att[b, h, t, t - k]
    over every batch row b and every position t >= k. Returns (H,).

    att (B, H, T, T): attention weights, row t of head h summing to 1 over positions <= t.
    A "previous-token head" scores near 1 for k = 1."""
    B, H, T, _ = _check_attention(att)
    if not 0 <= k < T:
        raise ValueError(f"k must be in [0, {T}), got {k}")
    t = np.arange(k, T)
    return att[:, :, t, t - k].mean(axis=(0, 2))


def attention_after_occurrence(att: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """How much each head looks k positions after an earlier occurrence of the current token.

    For every position t whose token occurred before, the weight that row t puts on the
    positions j <= t with idx[j - k] == idx[t] (j - k < t), summed; then the mean over all
    such rows. Returns (H,). An induction head in its textbook form scores near 1 for k = 1:
    it finds the token after the last time the current one appeared, which is a good guess
    of what comes next.

    att (B, H, T, T) attention weights, idx (B, T) the token ids of the same forward pass."""
    B, H, T, _ = _check_attention(att)
    idx = np.asarray(idx)
    if idx.shape != (B, T):
        raise ValueError(f"idx must have shape {(B, T)} to match att, got {idx.shape}")
    if not 1 <= k < T:
        raise ValueError(f"k must be in [1, {T}), got {k}")
    same = idx[:, :, None] == idx[:, None, :]  # (B, T, T): same[b, t, i] = idx[b, t] == idx[b, i]
    earlier = np.tril(np.ones((T, T), dtype=bool), k=-1)  # i < t
    occurred = same & earlier  # (B, T, T): i is an earlier occurrence of the token at t
    looked_at = np.zeros_like(occurred)  # (B, T, T): j = i + k for such an i, and j <= t
    looked_at[:, :, k:] = occurred[:, :, :T - k]
    looked_at &= np.tril(np.ones((T, T), dtype=bool))
    rows = occurred.any(axis=2)  # (B, T): the token at t occurred before
    if not rows.any():
        raise ValueError("no token in idx occurs twice in its row: nothing to measure")
    weight = (att * looked_at[:, None]).sum(axis=3)  # (B, H, T)
    return weight.transpose(1, 0, 2)[:, rows].mean(axis=1)


def _check_attention(att):
    if not isinstance(att, np.ndarray) or att.ndim != 4 or att.shape[2] != att.shape[3]:
        raise ValueError(f"att must be a (B, H, T, T) array of attention weights, got "
                         f"{getattr(att, 'shape', type(att).__name__)}")
    return att.shape

"""Chapter 2, attention: its grader catches plausible wrong answers, the package code the
chapter adds (GPT.attention_weights, minigpt.tasks, the attention figures) is right, and
the notebook runs and shows what the reading claims.

A wrong answer is a function named <exercise>__<what is wrong>; course_helpers appends it
to the solutions under the exercise's name. Its body runs in solutions.py's namespace
(np and math are imported there)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_helpers import check_wrong_answers_are_caught, execute_notebook
from minigpt import layers, plots, tasks
from minigpt.kernels import reference
from minigpt.model import GPT, GPTConfig

# --- wrong answers, exercise by exercise ---------------------------------------------------


def softmax__no_max_subtraction(x):
    e = np.exp(x)  # exp(1000) = inf, and inf / inf = nan
    return e / e.sum(axis=-1, keepdims=True)


def softmax__one_max_for_the_whole_array(x):
    e = np.exp(x - x.max())  # a row far below the global max underflows to 0 / 0
    return e / e.sum(axis=-1, keepdims=True)


def softmax__over_the_first_axis(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def softmax_backward__missing_the_row_sum_term(dy, y):
    return y * dy  # only the diagonal of the Jacobian


def softmax_backward__row_sum_over_the_first_axis(dy, y):
    return y * (dy - (dy * y).sum(axis=0, keepdims=True))


def softmax_backward__off_by_one_percent(dy, y):
    return 1.01 * y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def softmax_backward__sum_of_dy_instead_of_y_dot_dy(dy, y):
    return y * (dy - dy.sum(axis=-1, keepdims=True))


def causal_attention__scaled_by_one_over_d(q, k, v):
    scores = q @ np.swapaxes(k, -1, -2) / q.shape[-1]
    T = q.shape[-2]
    att = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, scores)
    att = np.exp(att - att.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    return att @ v, att


def causal_attention__not_scaled(q, k, v):
    scores = q @ np.swapaxes(k, -1, -2)
    T = q.shape[-2]
    att = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, scores)
    att = np.exp(att - att.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    return att @ v, att


def causal_attention__mask_includes_the_diagonal(q, k, v):
    T = q.shape[-2]
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    scores = np.where(np.triu(np.ones((T, T), dtype=bool), k=0), -1e9, scores)  # no NaN: row 0 goes uniform
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    return att @ v, att


def causal_attention__mask_after_softmax_not_renormalised(q, k, v):
    T = q.shape[-2]
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    att = att * np.tril(np.ones((T, T)))  # the rows no longer sum to 1
    return att @ v, att


def causal_attention__softmax_over_the_query_axis(q, k, v):
    T = q.shape[-2]
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    scores = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, scores)
    att = np.exp(scores - scores.max(axis=-2, keepdims=True))
    att = att / att.sum(axis=-2, keepdims=True)
    return att @ v, att


def causal_attention__no_mask(q, k, v):
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    return att @ v, att


def causal_attention_backward__dk_transposed(dout, q, k, v, att):
    hs = q.shape[-1]
    dv = np.swapaxes(att, -1, -2) @ dout
    datt = dout @ np.swapaxes(v, -1, -2)
    dscores = att * (datt - (datt * att).sum(axis=-1, keepdims=True)) / math.sqrt(hs)
    return dscores @ k, dscores @ q, dv  # dk needs dscores^T


def causal_attention_backward__missing_the_row_sum_term(dout, q, k, v, att):
    hs = q.shape[-1]
    dv = np.swapaxes(att, -1, -2) @ dout
    datt = dout @ np.swapaxes(v, -1, -2)
    dscores = att * datt / math.sqrt(hs)
    return dscores @ k, np.swapaxes(dscores, -1, -2) @ q, dv


def causal_attention_backward__forgets_the_scale(dout, q, k, v, att):
    dv = np.swapaxes(att, -1, -2) @ dout
    datt = dout @ np.swapaxes(v, -1, -2)
    dscores = att * (datt - (datt * att).sum(axis=-1, keepdims=True))
    return dscores @ k, np.swapaxes(dscores, -1, -2) @ q, dv


def causal_attention_backward__dv_off_by_one_percent(dout, q, k, v, att):
    hs = q.shape[-1]
    dv = 1.01 * np.swapaxes(att, -1, -2) @ dout
    datt = dout @ np.swapaxes(v, -1, -2)
    dscores = att * (datt - (datt * att).sum(axis=-1, keepdims=True)) / math.sqrt(hs)
    return dscores @ k, np.swapaxes(dscores, -1, -2) @ q, dv


def causal_attention_backward__dv_not_transposed(dout, q, k, v, att):
    hs = q.shape[-1]
    dv = att @ dout  # needs att^T: value j is read by the queries t >= j
    datt = dout @ np.swapaxes(v, -1, -2)
    dscores = att * (datt - (datt * att).sum(axis=-1, keepdims=True)) / math.sqrt(hs)
    return dscores @ k, np.swapaxes(dscores, -1, -2) @ q, dv


def multi_head_attention__heads_take_interleaved_channels(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head):
    from minigpt.kernels.reference import attention_forward

    B, T, C = x.shape
    hs = C // n_head
    qkv = x @ attn_weight + attn_bias
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, hs, n_head).transpose(0, 3, 1, 2) for i in range(3))
    y, _ = attention_forward(q, k, v)
    y = y.transpose(0, 2, 3, 1).reshape(B, T, C)
    return y @ proj_weight + proj_bias


def multi_head_attention__merged_without_transposing_back(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head):
    from minigpt.kernels.reference import attention_forward

    B, T, C = x.shape
    hs = C // n_head
    qkv = x @ attn_weight + attn_bias
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
    y, _ = attention_forward(q, k, v)
    y = y.reshape(B, T, C)  # (B, H, T, hs) read as (B, T, C): positions and heads mixed up
    return y @ proj_weight + proj_bias


def multi_head_attention__scaled_by_the_full_width(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head):
    B, T, C = x.shape
    hs = C // n_head
    qkv = x @ attn_weight + attn_bias
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(C)  # should be sqrt(hs), the size of one head
    scores = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, scores)
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
    return y @ proj_weight + proj_bias


def multi_head_attention__no_output_projection(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head):
    from minigpt.kernels.reference import attention_forward

    B, T, C = x.shape
    hs = C // n_head
    qkv = x @ attn_weight + attn_bias
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
    y, _ = attention_forward(q, k, v)
    return y.transpose(0, 2, 1, 3).reshape(B, T, C)


def max_attention_weight__scaled_by_one_over_d(d, scaled, n_queries=2000, n_keys=16, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d))
    k = rng.standard_normal((n_queries, n_keys, d))
    scores = np.einsum("id,ijd->ij", q, k)
    if scaled:
        scores = scores / d
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return float((e / e.sum(axis=1, keepdims=True)).max(axis=1).mean())


def max_attention_weight__always_scaled(d, scaled, n_queries=2000, n_keys=16, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d))
    k = rng.standard_normal((n_queries, n_keys, d))
    scores = np.einsum("id,ijd->ij", q, k) / math.sqrt(d)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return float((e / e.sum(axis=1, keepdims=True)).max(axis=1).mean())


def max_attention_weight__max_over_the_queries(d, scaled, n_queries=2000, n_keys=16, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d))
    k = rng.standard_normal((n_queries, n_keys, d))
    scores = np.einsum("id,ijd->ij", q, k)
    if scaled:
        scores = scores / math.sqrt(d)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return float((e / e.sum(axis=1, keepdims=True)).max(axis=0).mean())


def max_attention_weight__keys_drawn_first(d, scaled, n_queries=2000, n_keys=16, seed=0):
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((n_queries, n_keys, d))  # the right idea, other random numbers
    q = rng.standard_normal((n_queries, d))
    scores = np.einsum("id,ijd->ij", q, k)
    if scaled:
        scores = scores / math.sqrt(d)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return float((e / e.sum(axis=1, keepdims=True)).max(axis=1).mean())


# --- added in review: dtype changes, arguments changed in place, a 1-D row, other slips ----------


def softmax__subtracts_the_row_mean(x):
    e = np.exp(x - x.mean(axis=-1, keepdims=True))  # safe only while max - mean < 709
    return e / e.sum(axis=-1, keepdims=True)


def softmax__float64_for_float32(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax__changes_its_input(x):
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def softmax__one_row_becomes_a_matrix(x):
    x = np.atleast_2d(x)  # (N,) comes back as (1, N)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward__overwrites_y(dy, y):
    y *= dy - (dy * y).sum(axis=-1, keepdims=True)  # right numbers, but the forward's y is gone
    return y


def softmax_backward__overwrites_dy(dy, y):
    dy -= (dy * y).sum(axis=-1, keepdims=True)
    dy *= y
    return dy


def softmax_backward__float64_for_float32(dy, y):
    dy, y = np.asarray(dy, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def causal_attention__scales_q_in_place(q, k, v):
    q /= math.sqrt(q.shape[-1])  # changes the caller's q
    T = q.shape[-2]
    scores = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, q @ np.swapaxes(k, -1, -2))
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    return att @ v, att


def causal_attention__float64_additive_mask(q, k, v):
    T = q.shape[-2]
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    scores = scores + np.triu(np.full((T, T), -1e9), k=1)  # a float64 mask turns float32 scores into float64
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    return att @ v, att


def causal_attention__scaled_by_sqrt_T(q, k, v):
    T = q.shape[-2]
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(T)  # sqrt of the sequence length, not of hs
    scores = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, scores)
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    return att @ v, att


def causal_attention_backward__overwrites_att(dout, q, k, v, att):
    hs = q.shape[-1]
    dv = np.swapaxes(att, -1, -2) @ dout
    datt = dout @ np.swapaxes(v, -1, -2)
    att *= datt - (datt * att).sum(axis=-1, keepdims=True)  # dscores written over the forward's att
    att /= math.sqrt(hs)
    return att @ k, np.swapaxes(att, -1, -2) @ q, dv


def causal_attention_backward__softmax_sum_over_queries(dout, q, k, v, att):
    hs = q.shape[-1]
    dv = np.swapaxes(att, -1, -2) @ dout
    datt = dout @ np.swapaxes(v, -1, -2)
    dscores = att * (datt - (datt * att).sum(axis=-2, keepdims=True)) / math.sqrt(hs)  # a column, not a row
    return dscores @ k, np.swapaxes(dscores, -1, -2) @ q, dv


def multi_head_attention__qkv_interleaved_per_head(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head):
    from minigpt.kernels.reference import attention_forward

    B, T, C = x.shape
    hs = C // n_head
    qkv = (x @ attn_weight + attn_bias).reshape(B, T, n_head, 3 * hs).transpose(0, 2, 1, 3)  # q, k, v per head
    y, _ = attention_forward(qkv[..., :hs], qkv[..., hs:2 * hs], qkv[..., 2 * hs:])
    return y.transpose(0, 2, 1, 3).reshape(B, T, C) @ proj_weight + proj_bias


def multi_head_attention__batch_as_one_sequence(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head):
    from minigpt.kernels.reference import attention_forward

    B, T, C = x.shape
    hs = C // n_head
    qkv = x.reshape(1, B * T, C) @ attn_weight + attn_bias  # sequence 1 can now see sequence 0
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(1, B * T, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
    y, _ = attention_forward(q, k, v)
    return y.transpose(0, 2, 1, 3).reshape(B, T, C) @ proj_weight + proj_bias


def multi_head_attention__float64_for_float32(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head):
    B, T, C = x.shape
    hs = C // n_head
    qkv = x @ attn_weight + attn_bias
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)  # np.sqrt gives a float64 scalar: float32 -> float64
    scores = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, scores)
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att = att / att.sum(axis=-1, keepdims=True)
    y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
    return y @ proj_weight + proj_bias


def max_attention_weight__n_keys_hard_coded_16(d, scaled, n_queries=2000, n_keys=16, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d))
    k = rng.standard_normal((n_queries, 16, d))  # the default, whatever n_keys is
    scores = np.einsum("id,ijd->ij", q, k)
    if scaled:
        scores = scores / math.sqrt(d)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return float((e / e.sum(axis=1, keepdims=True)).max(axis=1).mean())


def max_attention_weight__one_set_of_keys_for_all_queries(d, scaled, n_queries=2000, n_keys=16, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d))
    k = rng.standard_normal((n_keys, d))  # every query scores the same keys
    scores = q @ k.T
    if scaled:
        scores = scores / math.sqrt(d)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return float((e / e.sum(axis=1, keepdims=True)).max(axis=1).mean())



# --- added after an audit: a shift per matrix, float32 for float64, no shift inside attention ---


def softmax__one_max_per_matrix(x):
    # the rows of a matrix share one shift: a row far below the matrix's max underflows to 0 / 0
    m = x.max(axis=-1, keepdims=True) if x.ndim < 3 else x.max(axis=(-2, -1), keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=-1, keepdims=True)


def softmax__float32_whatever_the_input(x):
    x = x.astype(np.float32)  # float64 in, float32 out: half the digits gone
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward__returns_a_list(dy, y):
    return (y * (dy - (dy * y).sum(axis=-1, keepdims=True))).tolist()


def causal_attention__no_max_shift(q, k, v):
    T = q.shape[-2]
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    scores = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, scores)
    e = np.exp(scores)  # right for standard-normal q and k; exp(710) is inf
    att = e / e.sum(axis=-1, keepdims=True)
    return att @ v, att


def multi_head_attention__no_max_shift(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head):
    B, T, C = x.shape
    hs = C // n_head
    qkv = x @ attn_weight + attn_bias
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
    scores = np.where(np.tril(np.ones((T, T), dtype=bool)), q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs), -np.inf)
    e = np.exp(scores)
    att = e / e.sum(axis=-1, keepdims=True)
    return (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C) @ proj_weight + proj_bias


def max_attention_weight__returns_numpy_float32(d, scaled, n_queries=2000, n_keys=16, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d))
    k = rng.standard_normal((n_queries, n_keys, d))
    scores = np.einsum("id,ijd->ij", q, k)
    if scaled:
        scores = scores / math.sqrt(d)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.float32((e / e.sum(axis=1, keepdims=True)).max(axis=1).mean())  # not a Python float


def max_attention_weight__first_query_left_out(d, scaled, n_queries=2000, n_keys=16, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d))
    k = rng.standard_normal((n_queries, n_keys, d))
    scores = np.einsum("id,ijd->ij", q, k)
    if scaled:
        scores = scores / math.sqrt(d)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return float((e / e.sum(axis=1, keepdims=True)).max(axis=1)[1:].mean())  # n_queries - 1 of them


# --- added in a second audit: an unshifted softmax in the measurement -----------------------------


def max_attention_weight__no_max_shift(d, scaled, n_queries=2000, n_keys=16, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d))
    k = rng.standard_normal((n_queries, n_keys, d))
    scores = np.einsum("id,ijd->ij", q, k)
    if scaled:
        scores = scores / math.sqrt(d)
    e = np.exp(scores)  # right while every score is below 709; at d = 200000 unscaled, inf / inf = nan
    return float((e / e.sum(axis=1, keepdims=True)).max(axis=1).mean())


WRONG_ANSWERS = [
    softmax__no_max_subtraction, softmax__one_max_for_the_whole_array, softmax__over_the_first_axis,
    softmax_backward__missing_the_row_sum_term, softmax_backward__row_sum_over_the_first_axis,
    softmax_backward__off_by_one_percent, softmax_backward__sum_of_dy_instead_of_y_dot_dy,
    causal_attention__scaled_by_one_over_d, causal_attention__not_scaled,
    causal_attention__mask_includes_the_diagonal, causal_attention__mask_after_softmax_not_renormalised,
    causal_attention__softmax_over_the_query_axis, causal_attention__no_mask,
    causal_attention_backward__dk_transposed, causal_attention_backward__missing_the_row_sum_term,
    causal_attention_backward__forgets_the_scale, causal_attention_backward__dv_off_by_one_percent,
    causal_attention_backward__dv_not_transposed,
    multi_head_attention__heads_take_interleaved_channels, multi_head_attention__merged_without_transposing_back,
    multi_head_attention__scaled_by_the_full_width, multi_head_attention__no_output_projection,
    max_attention_weight__scaled_by_one_over_d, max_attention_weight__always_scaled,
    max_attention_weight__max_over_the_queries, max_attention_weight__keys_drawn_first,
    # added in review
    softmax__subtracts_the_row_mean, softmax__float64_for_float32, softmax__changes_its_input,
    softmax__one_row_becomes_a_matrix,
    softmax_backward__overwrites_y, softmax_backward__overwrites_dy, softmax_backward__float64_for_float32,
    causal_attention__scales_q_in_place, causal_attention__float64_additive_mask, causal_attention__scaled_by_sqrt_T,
    causal_attention_backward__overwrites_att, causal_attention_backward__softmax_sum_over_queries,
    multi_head_attention__qkv_interleaved_per_head, multi_head_attention__batch_as_one_sequence,
    multi_head_attention__float64_for_float32,
    max_attention_weight__n_keys_hard_coded_16, max_attention_weight__one_set_of_keys_for_all_queries,
    # added after an audit
    softmax__one_max_per_matrix, softmax__float32_whatever_the_input, softmax_backward__returns_a_list,
    causal_attention__no_max_shift, multi_head_attention__no_max_shift,
    max_attention_weight__returns_numpy_float32, max_attention_weight__first_query_left_out,
    # added in a second audit
    max_attention_weight__no_max_shift,
]  # fmt: skip


def test_every_wrong_answer_is_graded_wrong_and_the_rest_still_pass(tmp_path):
    check_wrong_answers_are_caught("02", tmp_path, WRONG_ANSWERS)


def test_the_wrong_answers_are_really_wrong():
    """Each wrong answer differs from the package on an ordinary input (no wrong answer is
    secretly right, which would make its test above meaningless)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)) * 3
    with np.errstate(invalid="ignore", under="ignore"):  # 0 / 0 is the point
        wrong = softmax__one_max_for_the_whole_array(x + np.array([[900], [0], [-900]]))
    assert not np.allclose(wrong, reference.softmax_forward(x + np.array([[900], [0], [-900]])))
    q, k, v = (rng.standard_normal((1, 2, 4, 3)) for _ in range(3))
    out, att = reference.attention_forward(q, k, v)
    for wrong in (causal_attention__mask_includes_the_diagonal, causal_attention__scaled_by_one_over_d):
        assert not np.allclose(wrong(q, k, v)[1], att)
    right = reference.attention_backward(out * 0 + 1, q, k, v, att)
    assert not np.allclose(causal_attention_backward__dk_transposed(out * 0 + 1, q, k, v, att)[1], right[1])
    # the ones added in review: NaN on a wide row, float32 made float64, the caller's arrays changed
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(softmax__subtracts_the_row_mean(np.array([-800.0, 800.0, 0.0]))).any()
    assert softmax__float64_for_float32(x.astype(np.float32)).dtype == np.float64
    assert multi_head_attention__float64_for_float32(*(a.astype(np.float32) for a in (
        rng.standard_normal((1, 3, 4)), rng.standard_normal((4, 12)), np.zeros(12), np.eye(4), np.zeros(4))), 2
    ).dtype == np.float64
    given = x.copy()
    softmax__changes_its_input(given)
    assert not np.array_equal(given, x)
    q_given = q.copy()
    causal_attention__scales_q_in_place(q_given, k, v)
    assert not np.array_equal(q_given, q)


# --- GPT.attention_weights ----------------------------------------------------------------


def test_attention_weights_are_the_probabilities_of_the_last_forward():
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=12)
    model = GPT(config, seed=1, dtype=np.float64)
    idx = np.random.default_rng(2).integers(0, 11, (3, 6))
    with model.evaluating():
        model.forward(idx)
    weights = model.attention_weights()
    assert len(weights) == 2 and all(w.shape == (3, 2, 6, 6) for w in weights)
    # layer 0 recomputed by hand from its inputs: embeddings, ln_1, the attention layer
    p = model.params
    x = p["wte.weight"][idx] + p["wpe.weight"][:6]
    a, _ = layers.layernorm_forward(x, p["h.0.ln_1.weight"], p["h.0.ln_1.bias"])
    qkv = a @ p["h.0.attn.c_attn.weight"] + p["h.0.attn.c_attn.bias"]  # (3, 6, 36)
    q, k = (qkv[..., i * 12:(i + 1) * 12].reshape(3, 6, 2, 6).transpose(0, 2, 1, 3) for i in range(2))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(6) + np.triu(np.full((6, 6), -np.inf), k=1)
    expected = np.exp(scores - scores.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(weights[0], expected, atol=1e-12)
    # copies: changing them changes nothing in the model
    weights[1][...] = 0.0
    assert np.allclose(model.attention_weights()[1].sum(axis=-1), 1.0)


def test_attention_weights_need_a_forward_and_are_freed_by_backward():
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4), seed=0)
    with pytest.raises(ValueError, match="needs a forward"):
        model.attention_weights()
    idx = np.array([[1, 2, 3]])
    model.forward(idx, idx)
    assert model.attention_weights()[0].shape == (1, 1, 3, 3)
    model.backward()
    with pytest.raises(ValueError, match="backward"):
        model.attention_weights()


# --- minigpt.tasks ---------------------------------------------------------------------------


def test_repeated_segments_repeat_after_a_prefix_and_target_only_the_predictable():
    idx, targets = tasks.repeated_segments(np.random.default_rng(0), 200, 20, 16, min_period=2,
                                           max_period=5, max_prefix=4)
    assert idx.shape == targets.shape == (200, 20) and idx.dtype == targets.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < 16
    periods, prefixes = set(), set()
    for row, target in zip(idx, targets):
        first_repeat = next(t for t in range(20) if row[t] in row[:t])  # the first token seen before
        period = next(p for p in range(1, 20) if row[first_repeat - p] == row[first_repeat])
        prefix = first_repeat - period
        periods.add(period)
        prefixes.add(prefix)
        assert len(set(row[:first_repeat])) == first_repeat  # prefix and segment: all distinct
        assert np.array_equal(row[first_repeat:], row[prefix:20 - period])  # then it repeats
        assert np.all(target[:first_repeat] == -100)
        assert np.array_equal(target[first_repeat:-1], row[first_repeat + 1:])  # the next token
        assert target[-1] == row[20 - period]  # one past the end: the repeat goes on
    assert periods == {2, 3, 4, 5} and prefixes == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("kwargs, problem", [
    ({"vocab_size": 6}, "vocab_size"), ({"seq_len": 8}, "seq_len"), ({"min_period": 6}, "min_period"),
    ({"batch_size": 0}, "batch_size"), ({"max_prefix": -1}, "max_prefix")])  # fmt: skip
def test_repeated_segments_refuse_impossible_settings(kwargs, problem):
    settings = {"batch_size": 2, "seq_len": 12, "vocab_size": 10, "min_period": 2, "max_period": 5,
                "max_prefix": 3, **kwargs}
    with pytest.raises(ValueError, match=problem):
        tasks.repeated_segments(np.random.default_rng(0), **settings)


def _attention_looking(offsets, T):
    """(1, 1, T, T) weights that put all of row t on t - offsets[t] (or on 0 if that is < 0)."""
    att = np.zeros((1, 1, T, T))
    for t in range(T):
        att[0, 0, t, max(t - offsets[t], 0)] = 1.0
    return att


def test_attention_back_measures_a_previous_token_head():
    T = 6
    att = np.concatenate([_attention_looking([1] * T, T), _attention_looking([2] * T, T)], axis=1)  # 2 heads
    np.testing.assert_allclose(tasks.attention_back(att, 1), [1.0, 1 / 5])  # head 1 at t=1 can only look 1 back
    np.testing.assert_allclose(tasks.attention_back(att, 2), [0.0, 1.0])
    with pytest.raises(ValueError, match="k must be"):
        tasks.attention_back(att, 6)


def test_attention_after_occurrence_measures_an_induction_head():
    idx = np.array([[5, 1, 2, 3, 1, 2, 3, 1]])  # prefix 5, period 3: tokens at t >= 4 occurred before
    T = idx.shape[1]
    prev = {4: 1, 5: 2, 6: 3, 7: 4}  # the last earlier occurrence of idx[t]
    induction = np.zeros((1, 1, T, T))
    for t in range(T):
        induction[0, 0, t, prev[t] + 1 if t in prev else t] = 1.0  # one after the previous occurrence
    assert tasks.attention_after_occurrence(induction, idx, 1) == pytest.approx([1.0])
    assert tasks.attention_after_occurrence(induction, idx, 2) == pytest.approx([0.0])
    # at t = 7 the token 1 occurred at 1 and at 4: looking after either counts
    split = induction.copy()
    split[0, 0, 7] = 0.0
    split[0, 0, 7, [2, 5]] = 0.5
    assert tasks.attention_after_occurrence(split, idx, 1) == pytest.approx([1.0])
    with pytest.raises(ValueError, match="occurs twice"):
        tasks.attention_after_occurrence(induction, np.arange(T)[None], 1)
    with pytest.raises(ValueError, match="shape"):
        tasks.attention_after_occurrence(induction, idx[:, :4], 1)


# --- the figures -------------------------------------------------------------------------------


def test_the_attention_figures_draw_what_they_are_given(tmp_path):
    fig = plots.plot_softmax_saturation([4, 16, 64], {"scaled": [0.3, 0.3, 0.3], "unscaled": [0.5, 0.8, 0.95]},
                                        {"scaled": [1e-1, 1e-1, 1e-1], "unscaled": [1e-2, 1e-3, 1e-4]}, n_keys=16,
                                        out_png=tmp_path / "s.png")
    assert len(fig.axes) == 2 and [len(line.get_xdata()) for line in fig.axes[0].lines][:2] == [3, 3]
    assert (tmp_path / "s.png").stat().st_size > 1000
    att = np.tril(np.ones((2, 3, 5, 5)))
    att /= att.sum(axis=-1, keepdims=True)
    fig = plots.plot_attention_heads([att, att], tokens=[4, 1, 2, 4, 1], row=1)
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 6 and heatmaps[5].get_title() == "layer 1, head 2"
    np.testing.assert_array_equal(heatmaps[0].images[0].get_array(), att[1, 0])
    scores = np.where(np.triu(np.ones((5, 5), dtype=bool), k=1), -np.inf, np.arange(25.0).reshape(5, 5) - 12)
    fig = plots.plot_attention_maps({"scores": scores, "weights": att[0, 0]})
    masked = fig.axes[0].images[0].get_array()
    assert np.ma.is_masked(masked) and masked.mask.sum() == 10  # the 10 future entries, in grey


# --- the notebook ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_notebook_runs_and_shows_what_the_chapter_claims():
    values, seconds = execute_notebook("02-attention", [
        "max_grad_error", "loss_at_step_0", "math.log(V)", "logit_std", "losses[0]", "losses[-1]",
        "head_offset", "induction_score", "lookback_scores", "key_head", "value_head", "induction_head",
        "ablation", "saturation_scaled", "saturation_unscaled", "causality_change"])
    assert values["max_grad_error"] < 1e-7
    # step 0: near log(V), above it by about sigma^2 / 2 for logits of spread sigma
    assert abs(values["loss_at_step_0"] - values["math.log(V)"] - values["logit_std"] ** 2 / 2) < 0.2
    assert values["losses[-1]"] < 0.1 < values["losses[0]"] / 10  # the loss falls, to near 0
    # the heads: a layer-1 head looks k after an earlier occurrence of the current token; layer 0
    # has a head looking k back (the key) and, for k > 1, another looking k - 1 back (the value)
    k = values["head_offset"]
    assert values["induction_score"] > 0.5
    assert values["lookback_scores"][str(k)] > 0.4
    ablation = values["ablation"]
    key_loss, key_score = ablation[f"layer 0, head {values['key_head']}"]
    assert key_score < 0.3 and key_loss > 1.0  # without the key head, layer 1 cannot find the place
    if k > 1:
        assert values["lookback_scores"][str(k - 1)] > 0.4 and values["value_head"] != values["key_head"]
        value_loss, value_score = ablation[f"layer 0, head {values['value_head']}"]
        assert value_score > 0.5 and value_loss > 1.0  # it still looks there, but fetches nothing useful
    assert ablation[f"layer 1, head {values['induction_head']}"][0] > 1.0
    # sqrt(d): without it softmax saturates at d = 256, with it it does not
    assert values["saturation_unscaled"] > 0.8 > 0.5 > values["saturation_scaled"]
    assert values["causality_change"] == 0.0  # changing a later input changes no earlier output

"""Chapter 6, making it fast: its grader catches plausible wrong answers, its figures draw
what they are given, and its notebook runs and shows what the reading claims (compile
time is paid once, the FLOP count of a step is what the matmuls do, matmul and GELU sit
on opposite sides of the roofline, the ladder climbs towards BLAS, a fused bias + GELU
gives the unfused result, small batches are overhead-bound, and two MPI ranks train as one
process does)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from course_helpers import check_wrong_answers_are_caught, execute_notebook, flawed
from test_distributed import mpiexec

# Plausible wrong answers, each named <exercise>__<what is wrong>. They are pasted into a
# copy of solutions.py, so they may use only what it imports (np, math, time, GELU_COEFF,
# GELU_CUBIC); helpers would not be pasted, so each answer is whole, except the variants
# made by `flawed` (one answer with a switch per flaw, pasted with it).

GELU_COEFF, GELU_CUBIC = math.sqrt(2.0 / math.pi), 0.044715

# --- 6.1 median_time


def median_time__with_flaws(fn, warmup, repeats, clock=time.perf_counter, summary="median", warm_ups_skipped=0,
                            stopwatch="clock", stored_as="float64", returned="Python float"):
    """The honest timer, unless one of its flaws is switched on (see `flawed` below)."""
    for _ in range(max(warmup - warm_ups_skipped, 0)):
        fn()
    read = {"clock": clock, "perf_counter": time.perf_counter}[stopwatch]
    durations = np.zeros(repeats, dtype=stored_as)  # float32: ~7 significant digits
    for k in range(repeats):
        start = read()
        fn()
        durations[k] = read() - start
    summarise = {"median": np.median, "mean": np.mean, "fastest": np.min,
                 "upper middle": lambda d: np.sort(d)[repeats // 2]}[summary]  # (an even count's median is 2 values' mean)
    value = summarise(durations)
    return {"Python float": float(value), "NumPy float": np.float64(value),
            "rounded to ms": round(float(value), 3)}[returned]  # rounded: a microsecond kernel reads 0.0


median_time__mean_of_the_repeats = flawed(median_time__with_flaws, "mean_of_the_repeats", summary="mean")
median_time__fastest_repeat = flawed(median_time__with_flaws, "fastest_repeat", summary="fastest")
median_time__one_warmup_call_too_few = flawed(median_time__with_flaws, "one_warmup_call_too_few", warm_ups_skipped=1)
median_time__middle_element_of_an_even_count = flawed(median_time__with_flaws, "middle_element_of_an_even_count",
                                                      summary="upper middle")
median_time__rounded_to_milliseconds = flawed(median_time__with_flaws, "rounded_to_milliseconds",
                                              returned="rounded to ms")
median_time__perf_counter_instead_of_clock = flawed(median_time__with_flaws, "perf_counter_instead_of_clock",
                                                    stopwatch="perf_counter")
median_time__durations_in_float32 = flawed(median_time__with_flaws, "durations_in_float32", stored_as="float32")
median_time__numpy_float = flawed(median_time__with_flaws, "numpy_float", returned="NumPy float")


def median_time__warmup_calls_timed_too(fn, warmup, repeats, clock=time.perf_counter):
    durations = []
    for _ in range(warmup + repeats):
        start = clock()
        fn()
        durations.append(clock() - start)
    return float(np.median(durations))  # the compile time is in the sample


def median_time__one_stopwatch_for_all_repeats(fn, warmup, repeats, clock=time.perf_counter):
    for _ in range(warmup):
        fn()
    start = clock()
    for _ in range(repeats):
        fn()
    return float((clock() - start) / repeats)  # the mean again, in disguise


# --- 6.2 step_flops (N = the weights counted; each answer counts them its own way)


def step_flops__forward_only(config, batch_size, seq_len=None):
    C, L, T = config.n_embd, config.n_layer, seq_len or config.block_size
    norm = 2 * C if config.bias else C
    weights = config.vocab_size * C + L * (12 * C * C + (9 * C if config.bias else 0) + 2 * norm) + norm
    return int((2 * weights + 4 * L * C * T) * batch_size * T)  # no backward pass


def step_flops__counts_the_position_embeddings(config, batch_size, seq_len=None):
    C, L, T = config.n_embd, config.n_layer, seq_len or config.block_size
    norm = 2 * C if config.bias else C
    weights = config.vocab_size * C + L * (12 * C * C + (9 * C if config.bias else 0) + 2 * norm) + norm
    weights += config.block_size * C  # wpe: a lookup, no arithmetic
    return int((6 * weights + 12 * L * C * T) * batch_size * T)


def step_flops__no_attention_term(config, batch_size, seq_len=None):
    C, L, T = config.n_embd, config.n_layer, seq_len or config.block_size
    norm = 2 * C if config.bias else C
    weights = config.vocab_size * C + L * (12 * C * C + (9 * C if config.bias else 0) + 2 * norm) + norm
    return int(6 * weights * batch_size * T)


def step_flops__attention_over_block_size(config, batch_size, seq_len=None):
    C, L, T = config.n_embd, config.n_layer, seq_len or config.block_size
    norm = 2 * C if config.bias else C
    weights = config.vocab_size * C + L * (12 * C * C + (9 * C if config.bias else 0) + 2 * norm) + norm
    return int((6 * weights + 12 * L * C * config.block_size) * batch_size * T)


def step_flops__matrices_only(config, batch_size, seq_len=None):
    C, L, T = config.n_embd, config.n_layer, seq_len or config.block_size
    weights = config.vocab_size * C + L * 12 * C * C  # no biases, no layernorms
    return int((6 * weights + 12 * L * C * T) * batch_size * T)


def step_flops__ignores_bias_false(config, batch_size, seq_len=None):
    C, L, T = config.n_embd, config.n_layer, seq_len or config.block_size
    weights = config.vocab_size * C + L * (12 * C * C + 13 * C) + 2 * C  # as if every model had biases
    return int((6 * weights + 12 * L * C * T) * batch_size * T)


# --- 6.3 matmul_tiled


def matmul_tiled__one_big_product(a, b, tile):
    return a @ b


def matmul_tiled__drops_the_last_partial_tile(a, b, tile):
    M, K = a.shape
    N = b.shape[1]
    c = np.zeros((M, N), dtype=a.dtype)
    for i0 in range(0, max(M - tile + 1, 1), tile):
        for j0 in range(0, max(N - tile + 1, 1), tile):
            for k0 in range(0, max(K - tile + 1, 1), tile):
                c[i0:i0 + tile, j0:j0 + tile] += a[i0:i0 + tile, k0:k0 + tile] @ b[k0:k0 + tile, j0:j0 + tile]
    return c


def matmul_tiled__assigns_instead_of_adding(a, b, tile):
    M, K = a.shape
    N = b.shape[1]
    c = np.zeros((M, N), dtype=a.dtype)
    for i0 in range(0, M, tile):
        for j0 in range(0, N, tile):
            for k0 in range(0, K, tile):
                c[i0:i0 + tile, j0:j0 + tile] = a[i0:i0 + tile, k0:k0 + tile] @ b[k0:k0 + tile, j0:j0 + tile]
    return c  # only the last k tile is left


def matmul_tiled__float64_result(a, b, tile):
    M, K = a.shape
    N = b.shape[1]
    c = np.zeros((M, N))
    for i0 in range(0, M, tile):
        for j0 in range(0, N, tile):
            for k0 in range(0, K, tile):
                c[i0:i0 + tile, j0:j0 + tile] += a[i0:i0 + tile, k0:k0 + tile] @ b[k0:k0 + tile, j0:j0 + tile]
    return c


def matmul_tiled__whole_rows_of_b(a, b, tile):
    M, K = a.shape
    c = np.zeros((M, b.shape[1]), dtype=a.dtype)
    for i0 in range(0, M, tile):
        for k0 in range(0, K, tile):
            c[i0:i0 + tile] += a[i0:i0 + tile, k0:k0 + tile] @ b[k0:k0 + tile]  # N not tiled
    return c


# --- 6.4 bias_gelu_forward


def bias_gelu_forward__erf_gelu(h, bias):
    from math import erf

    u = h + bias
    return (0.5 * u * (1.0 + np.vectorize(erf)(u / math.sqrt(2.0)))).astype(h.dtype), u


def bias_gelu_forward__bias_after_the_gelu(h, bias):
    out = 0.5 * h * (1.0 + np.tanh(GELU_COEFF * (h + GELU_CUBIC * h**3)))
    return out + bias, h + bias


def bias_gelu_forward__adds_the_bias_in_place(h, bias):
    h += bias
    return 0.5 * h * (1.0 + np.tanh(GELU_COEFF * (h + GELU_CUBIC * h**3))), h


def bias_gelu_forward__cubic_term_squared(h, bias):
    u = h + bias
    return 0.5 * u * (1.0 + np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**2))), u


def bias_gelu_forward__float64_for_float32(h, bias):
    u = h.astype(np.float64) + bias
    return 0.5 * u * (1.0 + np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3))), u


# --- 6.5 bias_gelu_backward


def bias_gelu_backward__no_chain_through_tanh(dout, u):
    t = np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3))
    dh = dout * 0.5 * (1.0 + t)  # the 0.5 u (1 - t^2) du/dx term forgotten
    return dh, dh.reshape(-1, dh.shape[-1]).sum(axis=0)


def bias_gelu_backward__cubic_derivative_without_the_3(dout, u):
    t = np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3))
    dh = dout * (0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_COEFF * (1.0 + GELU_CUBIC * u * u))
    return dh, dh.reshape(-1, dh.shape[-1]).sum(axis=0)


def bias_gelu_backward__dbias_the_mean(dout, u):
    t = np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3))
    dh = dout * (0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_COEFF * (1.0 + 3.0 * GELU_CUBIC * u * u))
    return dh, dh.reshape(-1, dh.shape[-1]).mean(axis=0)


def bias_gelu_backward__dbias_over_the_first_axis_only(dout, u):
    t = np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3))
    dh = dout * (0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_COEFF * (1.0 + 3.0 * GELU_CUBIC * u * u))
    return dh, dh.sum(axis=0)  # (T, F) for a (B, T, F) input


def bias_gelu_backward__dbias_of_dout(dout, u):
    t = np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3))
    dh = dout * (0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_COEFF * (1.0 + 3.0 * GELU_CUBIC * u * u))
    return dh, dout.reshape(-1, dout.shape[-1]).sum(axis=0)  # the gradient from before the GELU


def bias_gelu_backward__float64_for_float32(dout, u):
    u = u.astype(np.float64)
    t = np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3))
    dh = dout * (0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_COEFF * (1.0 + 3.0 * GELU_CUBIC * u * u))
    return dh, dh.reshape(-1, dh.shape[-1]).sum(axis=0)


def bias_gelu_backward__dbias_summed_in_float32(dout, u):
    t = np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3))
    dh = dout * (0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_COEFF * (1.0 + 3.0 * GELU_CUBIC * u * u))
    dbias = dh.reshape(-1, dh.shape[-1]).sum(axis=0, dtype=np.float32)  # off by ~3e-8 in float64: under 1e-7
    return dh, dbias.astype(dh.dtype)


def bias_gelu_backward__writes_dh_into_u(dout, u):
    t = np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3))
    np.multiply(dout, 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_COEFF * (1.0 + 3.0 * GELU_CUBIC * u * u),
                out=u)  # the cache is overwritten
    return u, u.reshape(-1, u.shape[-1]).sum(axis=0)


# --- 6.6 ring_allreduce (the right ring, with one thing changed in each)


def ring_allreduce__np_sum(buffers):
    total = np.sum(np.array(buffers), axis=0)  # the right numbers, in NumPy's order
    N, P = len(buffers), len(buffers[0])
    sizes = [len(c) for c in np.array_split(np.arange(P), N)]
    return [total.copy() for _ in buffers], [0 if N == 1 else 2 * P - sizes[(r + 1) % N] - sizes[(r + 2) % N]
                                            for r in range(N)]


def ring_allreduce__with_flaws(buffers, gather_adds=False, extra_step=0, count="sent", in_place=False,
                               shared=False, dtype=None, one_rank_returns_inputs=False):
    """The ring done right, unless one of its flaws is switched on: the all-gather adds
    instead of copying, a step too many, the elements sent counted another way than sent,
    the inputs overwritten, one list shared by all ranks, the buffers copied into one dtype
    whatever theirs, one rank's "result" its input itself (see `flawed` below)."""
    N, P = len(buffers), len(buffers[0])
    if N == 1 and one_rank_returns_inputs:
        return list(buffers), [0]
    chunks = np.array_split(np.arange(P), N)
    held = [np.array(b, dtype=dtype, copy=True) for b in buffers]
    sent = [0] * N
    for phase in ("reduce-scatter", "all-gather"):
        for s in range(N - 1 + extra_step):
            messages = []
            for r in range(N):
                c = (r - s) % N if phase == "reduce-scatter" else (r + 1 - s) % N
                messages.append(((r + 1) % N, c, held[r][chunks[c]].copy()))
                sent[r] += len(chunks[c])
            for receiver, c, values in messages:
                if phase == "reduce-scatter" or gather_adds:
                    held[receiver][chunks[c]] += values
                else:
                    held[receiver][chunks[c]] = values
    if in_place:
        for b, h in zip(buffers, held):
            b[:] = h
    counted = {"sent": sent,
               "as if P / N were whole": [2 * (N - 1) * (P // N)] * N,
               "the reduce-scatter only": [(N - 1) * P // N] * N,
               "the whole buffer every step": [2 * (N - 1) * P] * N,
               "as NumPy floats": [np.float64(n) for n in sent]}[count]
    return ([held[0]] * N if shared else held), counted


ring_allreduce__all_gather_adds = flawed(ring_allreduce__with_flaws, "all_gather_adds", gather_adds=True)
ring_allreduce__one_step_too_many = flawed(ring_allreduce__with_flaws, "one_step_too_many", extra_step=1)
ring_allreduce__equal_chunks_assumed = flawed(ring_allreduce__with_flaws, "equal_chunks_assumed",
                                              count="as if P / N were whole")
ring_allreduce__reduce_scatter_counted_only = flawed(ring_allreduce__with_flaws, "reduce_scatter_counted_only",
                                                     count="the reduce-scatter only")
ring_allreduce__whole_buffer_every_step = flawed(ring_allreduce__with_flaws, "whole_buffer_every_step",
                                                 count="the whole buffer every step")
ring_allreduce__one_shared_result = flawed(ring_allreduce__with_flaws, "one_shared_result", shared=True)
ring_allreduce__sums_in_place = flawed(ring_allreduce__with_flaws, "sums_in_place", in_place=True)
ring_allreduce__float32_whatever_the_input = flawed(ring_allreduce__with_flaws, "float32_whatever_the_input",
                                                    dtype="float32")
ring_allreduce__one_rank_returns_its_input = flawed(ring_allreduce__with_flaws, "one_rank_returns_its_input",
                                                    one_rank_returns_inputs=True)
ring_allreduce__counts_as_numpy_floats = flawed(ring_allreduce__with_flaws, "counts_as_numpy_floats",
                                                count="as NumPy floats")


def ring_allreduce__slices_from_each_chunks_ends(buffers):
    N = len(buffers)
    chunks = np.array_split(np.arange(len(buffers[0])), N)
    bounds = [(chunk[0], chunk[-1] + 1) for chunk in chunks]  # an empty chunk (N > P) has no first position
    held = [np.array(b, copy=True) for b in buffers]
    sent = [0] * N
    for phase in ("reduce-scatter", "all-gather"):
        for s in range(N - 1):
            messages = []
            for r in range(N):
                start, stop = bounds[(r - s) % N if phase == "reduce-scatter" else (r + 1 - s) % N]
                messages.append(((r + 1) % N, start, stop, held[r][start:stop].copy()))
                sent[r] += int(stop - start)
            for receiver, start, stop, values in messages:
                if phase == "reduce-scatter":
                    held[receiver][start:stop] += values
                else:
                    held[receiver][start:stop] = values
    return held, sent


# --- 6.7 step_time_line


def step_time_line__with_flaws(steps, rounds, clock=time.perf_counter, summary="median", order="interleaved",
                               line="least squares", stopwatch="per call", warm_up=False, python_floats=True):
    """The measurement done right, unless one of its flaws is switched on (see `flawed`)."""
    sizes = list(steps)
    for size in sizes if warm_up else ():
        steps[size]()  # untimed: but the steps were warmed up already, and the grader counts the calls
    calls = {"interleaved": [s for _ in range(rounds) for s in sizes],
             "back to back": [s for s in sizes for _ in range(rounds)]}[order]
    durations = {s: [] for s in sizes}
    read = time.perf_counter if stopwatch == "perf_counter" else clock
    round_start = clock() if stopwatch == "per round" else None
    for n, size in enumerate(calls):
        start = read()
        steps[size]()
        durations[size].append(read() - start)
        if stopwatch == "per round" and (n + 1) % len(sizes) == 0:
            now = clock()
            for s in sizes:
                durations[s][-1] = (now - round_start) / len(sizes)
            round_start = now
    pick = {"median": np.median, "mean": np.mean, "fastest": np.min}[summary]
    medians = {s: float(pick(durations[s])) for s in sizes}
    xs, ys = np.array(sizes, dtype=float), np.array([medians[s] for s in sizes])
    if line == "least squares":
        per_row, fixed = np.polyfit(xs, ys, 1)
    elif line == "every call":
        per_row, fixed = np.polyfit([s for s in sizes for _ in durations[s]], np.concatenate(
            [durations[s] for s in sizes]), 1)
    elif line == "end points":
        low, high = np.argmin(xs), np.argmax(xs)
        per_row = (ys[high] - ys[low]) / (xs[high] - xs[low])
        fixed = ys[low] - per_row * xs[low]
    elif line == "through the origin":
        per_row, fixed = (xs * ys).sum() / (xs * xs).sum(), 0.0
    elif line == "order swapped":  # np.polyfit's highest power comes first
        fixed, per_row = np.polyfit(xs, ys, 1)
    else:
        raise ValueError(f"no such flaw: line={line!r}")
    return (float(fixed), float(per_row), medians) if python_floats else (np.float64(fixed), np.float64(per_row), medians)


step_time_line__mean_of_the_rounds = flawed(step_time_line__with_flaws, "mean_of_the_rounds", summary="mean")
step_time_line__fastest_round = flawed(step_time_line__with_flaws, "fastest_round", summary="fastest")
step_time_line__rounds_back_to_back = flawed(step_time_line__with_flaws, "rounds_back_to_back", order="back to back")
step_time_line__fit_to_every_call = flawed(step_time_line__with_flaws, "fit_to_every_call", line="every call")
step_time_line__line_through_the_end_points = flawed(step_time_line__with_flaws, "line_through_the_end_points",
                                                     line="end points")
step_time_line__line_through_the_origin = flawed(step_time_line__with_flaws, "line_through_the_origin",
                                                 line="through the origin")
step_time_line__polyfit_order_swapped = flawed(step_time_line__with_flaws, "polyfit_order_swapped",
                                               line="order swapped")
step_time_line__one_stopwatch_per_round = flawed(step_time_line__with_flaws, "one_stopwatch_per_round",
                                                 stopwatch="per round")
step_time_line__warms_up_first = flawed(step_time_line__with_flaws, "warms_up_first", warm_up=True)
step_time_line__numpy_floats = flawed(step_time_line__with_flaws, "numpy_floats", python_floats=False)
step_time_line__perf_counter_instead_of_clock = flawed(step_time_line__with_flaws, "perf_counter_instead_of_clock",
                                                       stopwatch="perf_counter")


WRONG_ANSWERS = [
    median_time__mean_of_the_repeats,
    median_time__fastest_repeat,
    median_time__warmup_calls_timed_too,
    median_time__one_stopwatch_for_all_repeats,
    median_time__one_warmup_call_too_few,
    median_time__middle_element_of_an_even_count,
    median_time__rounded_to_milliseconds,
    median_time__perf_counter_instead_of_clock,
    median_time__durations_in_float32,
    median_time__numpy_float,
    step_flops__forward_only,
    step_flops__counts_the_position_embeddings,
    step_flops__no_attention_term,
    step_flops__attention_over_block_size,
    step_flops__matrices_only,
    step_flops__ignores_bias_false,
    matmul_tiled__one_big_product,
    matmul_tiled__drops_the_last_partial_tile,
    matmul_tiled__assigns_instead_of_adding,
    matmul_tiled__float64_result,
    matmul_tiled__whole_rows_of_b,
    bias_gelu_forward__erf_gelu,
    bias_gelu_forward__bias_after_the_gelu,
    bias_gelu_forward__adds_the_bias_in_place,
    bias_gelu_forward__cubic_term_squared,
    bias_gelu_forward__float64_for_float32,
    bias_gelu_backward__no_chain_through_tanh,
    bias_gelu_backward__cubic_derivative_without_the_3,
    bias_gelu_backward__dbias_the_mean,
    bias_gelu_backward__dbias_over_the_first_axis_only,
    bias_gelu_backward__dbias_of_dout,
    bias_gelu_backward__float64_for_float32,
    bias_gelu_backward__dbias_summed_in_float32,
    bias_gelu_backward__writes_dh_into_u,
    ring_allreduce__np_sum,
    ring_allreduce__all_gather_adds,
    ring_allreduce__one_step_too_many,
    ring_allreduce__equal_chunks_assumed,
    ring_allreduce__reduce_scatter_counted_only,
    ring_allreduce__whole_buffer_every_step,
    ring_allreduce__one_shared_result,
    ring_allreduce__sums_in_place,
    ring_allreduce__float32_whatever_the_input,
    ring_allreduce__one_rank_returns_its_input,
    ring_allreduce__counts_as_numpy_floats,
    ring_allreduce__slices_from_each_chunks_ends,
    step_time_line__mean_of_the_rounds,
    step_time_line__fastest_round,
    step_time_line__rounds_back_to_back,
    step_time_line__fit_to_every_call,
    step_time_line__line_through_the_end_points,
    step_time_line__line_through_the_origin,
    step_time_line__polyfit_order_swapped,
    step_time_line__one_stopwatch_per_round,
    step_time_line__warms_up_first,
    step_time_line__perf_counter_instead_of_clock,
    step_time_line__numpy_floats,
]


def test_the_grader_catches_plausible_wrong_answers(tmp_path):
    check_wrong_answers_are_caught("06", tmp_path, WRONG_ANSWERS)


# --- the figures -----------------------------------------------------------------------------


def test_the_roofline_is_bandwidth_times_intensity_capped_at_the_peak(tmp_path):
    from minigpt.plots import plot_roofline, roofline

    assert roofline([0.5, 2.0, 5.0, 100.0], peak_gflops=50.0, bandwidth_gbs=10.0).tolist() == [5.0, 20.0, 50.0, 50.0]
    points = {"matmul": (2e9, 4e7, 0.1), "gelu": (9e6, 8e6, 1e-3)}  # intensity 50 and 1.125
    fig = plot_roofline(points, peak_gflops=50.0, bandwidth_gbs=10.0, out_png=tmp_path / "roof.png")
    assert (tmp_path / "roof.png").stat().st_size > 1000
    ax = fig.axes[0]
    drawn = {tuple(np.round(c.get_offsets()[0], 6)) for c in ax.collections}
    assert drawn == {(50.0, 20.0), (1.125, 9.0)}  # (FLOPs per byte, achieved GFLOP/s) of each kernel
    assert ax.lines[1].get_xdata()[0] == pytest.approx(5.0)  # the ridge point: 50 GFLOP/s / 10 GB/s
    with pytest.raises(ValueError, match="'gelu'.*positive"):
        plot_roofline({"gelu": (9e6, 0, 1e-3)}, 50.0, 10.0)


def test_the_batch_figure_fits_the_fixed_cost_per_step():
    from minigpt.plots import plot_step_time_vs_batch

    rows = [{"batch_size": b, "ms_per_step": 5.0 + 2.0 * b, "tokens_per_s": 64 * b / (5.0 + 2.0 * b) * 1e3}
            for b in (8, 1, 4, 2)]
    fig = plot_step_time_vs_batch(rows)
    fit = fig.axes[0].lines[1]
    assert fit.get_ydata()[0] == pytest.approx(5.0) and "5.0 ms + 2.00 ms per sequence" in fit.get_label()
    assert list(fig.axes[1].lines[0].get_xdata()) == [1, 2, 4, 8]  # sorted by batch size
    with pytest.raises(ValueError, match="at least two batch sizes"):
        plot_step_time_vs_batch(rows[:1])


def test_the_allreduce_figure_draws_the_ring_under_two_buffers():
    from minigpt.plots import plot_allreduce_traffic

    ring, root = plot_allreduce_traffic(8).axes[0].lines[:2]
    assert list(ring.get_xdata()) == list(range(2, 9))
    assert ring.get_ydata() == pytest.approx([2 * (n - 1) / n for n in range(2, 9)])
    assert root.get_ydata() == pytest.approx([n - 1 for n in range(2, 9)])
    with pytest.raises(ValueError, match="at least 2"):
        plot_allreduce_traffic(1)


# --- the notebook --------------------------------------------------------------------------


@pytest.mark.slow
def test_the_notebook_runs_and_shows_what_the_chapter_claims():
    from minigpt.bench.train import PRESETS
    from minigpt.model import flops_per_token

    values, _ = execute_notebook("06-making-it-fast", [
        "compile_ratio", "counted['flops']", "matrix_weights", "tokens", "step_flop_count",
        "intensity[matmul_label]", "intensity[gelu_label]", "percent['naive', 1]", "percent['register_blocked', 1]",
        "fusion_error", "watch.calls['kernels']", "ring_fraction", "rank_difference", "moved",
    ])
    config = PRESETS["shakespeare-char"].config
    # the first call of a Numba function is the compiler's
    assert values["compile_ratio"] > 10
    # the matmuls of a step do exactly 6 FLOPs per matrix weight per token; the step's estimate
    assert values["tokens"] == 12 * 64
    assert values["counted['flops']"] == 6 * values["matrix_weights"] * values["tokens"] == 3_662_217_216
    assert values["step_flop_count"] == flops_per_token(config) * values["tokens"]
    # the matmul is far right of the ridge, GELU about one FLOP per byte
    assert values["intensity[matmul_label]"] == pytest.approx(2 * 768 * 128 * 512 / (4 * (768 * 128 + 128 * 512
                                                                                          + 768 * 512)))
    assert values["intensity[gelu_label]"] == pytest.approx(9 / 8)
    # the ladder: the definition is slow, registers help
    naive, register_blocked = values["percent['naive', 1]"], values["percent['register_blocked', 1]"]
    assert naive < 10 and register_blocked > 3 * naive, (naive, register_blocked)
    # the fused kernel gives the unfused result; a step makes dozens of kernel calls
    assert values["fusion_error"] < 1e-5
    assert values["watch.calls['kernels']"] > 50
    # the ring: 2 (N-1)/N of the buffer per rank
    assert values["ring_fraction"] == {str(n): pytest.approx(2 * (n - 1) / n) for n in (2, 4, 8, 64)}
    # two MPI ranks train as one process does, to float32 rounding (the keys' biases aside)
    if values["rank_difference"] is None:  # the notebook's cell needs mpi4py and an mpiexec (CI has both)
        mpiexec()  # skips (locally) or fails (CI) for the one that is missing
    assert values["rank_difference"] < 1e-4 and values["moved"] > 1e-3, values

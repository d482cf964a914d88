"""Chapter 6 exercises: making it fast.

Seven exercises, in the order of the reading (chapters/06-making-it-fast/README.md), the
seventh a measurement for section 6:

    6.1  median_time          an honest timer: warm-up calls, then the median of timed repeats
    6.2  step_flops           the FLOPs of one training step: 6 per weight per token, plus attention
    6.3  matmul_tiled         a cache-blocked matmul: the product built from tile products
    6.4  bias_gelu_forward    a fused bias add + GELU: one pass, one array out
    6.5  bias_gelu_backward   its backward: dh and dbias from the pre-activation alone
    6.6  ring_allreduce       a ring all-reduce of N ranks' buffers, simulated, and what each rank sends
    6.7  step_time_line       the fixed and the per-sequence cost of a step, measured in interleaved rounds

Fill in the functions of exercises.py (this chapter's folder), replacing each
`raise NotImplementedError(...)`, and keep their names and signatures. Grade them with

    python -m minigpt grade 06

The grader checks each answer against minigpt's own code (minigpt.model.flops_per_token,
minigpt.kernels.reference) or against first principles, on inputs this file does not
show you: other sizes, models without biases, a tile larger than the matrix, one rank.
The timers (6.1, 6.7) are given a fake clock whose time moves only when the timed function
runs, so their answers are exact. The backward pass (6.5) is graded against central finite
differences in float64 (relative error below 1e-7). The ring (6.6) is checked bit for
bit in float32: the sums must be added in the ring's order, which is the point.
Write the maths with NumPy yourself: calling the minigpt function an exercise is graded
against teaches nothing.
"""

import math
import time

import numpy as np

GELU_COEFF = math.sqrt(2.0 / math.pi)  # GPT-2's tanh approximation: u = sqrt(2/pi) (x + 0.044715 x^3)
GELU_CUBIC = 0.044715


def median_time(fn, warmup, repeats, clock=time.perf_counter):
    """Exercise 6.1: the time of one call fn(), measured honestly.

    Call fn() `warmup` times without timing it (the first calls pay for compilation, cold
    caches and sleeping threads), then `repeats` more times, timing each call on its own
    with clock() (read it just before and just after the call). Return the median of those
    `repeats` durations, in clock units (seconds for the default), as a Python float.
    fn must be called exactly warmup + repeats times. warmup >= 0, repeats >= 1."""
    raise NotImplementedError('a loop of untimed calls, then a list of clock() differences, one per call; np.median of the list')


def step_flops(config, batch_size, seq_len=None):
    """Exercise 6.2: the floating-point operations of one training step (forward + backward).

    config is a minigpt GPTConfig (fields vocab_size, block_size, n_layer, n_head, n_embd,
    bias); the step runs on batch_size sequences of seq_len tokens (default:
    config.block_size). Count, per token:
      - 6 FLOPs per weight that takes part in a matmul or an elementwise product: every
        parameter of the model except the position embeddings wpe (a lookup adds nothing
        to the arithmetic; wte counts once, for the tied head's matmul). Biases and
        layernorm weights count too (config.bias=False means the model has no biases,
        layernorms included);
      - attention's scores q k^T and weighted sums att v, which have no weights:
        12 * n_layer * n_embd * seq_len (2 FLOPs per multiply-add, 2 matmuls, x3 for
        forward + backward; the causal mask is ignored, as the estimate usually does).
    Return the total for the step, a Python int."""
    raise NotImplementedError('per layer 12 C^2 weights (qkv 3C^2, proj C^2, mlp 8C^2) plus 13 C biases and layernorm numbers; add wte and ln_f; times 6, plus attention')


def matmul_tiled(a, b, tile):
    """Exercise 6.3: a @ b, computed tile by tile (cache blocking).

    a (M, K) and b (K, N) are float arrays of one dtype; return c (M, N) of that dtype,
    c = a @ b. Build it only from products of tiles: c[i0:i1, j0:j1] gets
    a[i0:i1, k0:k1] @ b[k0:k1, j0:j1] added, for tiles at most `tile` long in every
    direction (the last tile of each direction is shorter when the size is not a multiple
    of tile). Multiply slices of a and b as they are given, with @ (the grader watches the
    products you make: do not convert a or b with np.asarray or .astype first). One product
    per (row tile, k tile, column tile): ceil(M/tile) * ceil(K/tile) * ceil(N/tile) in all."""
    raise NotImplementedError('three loops over range(0, size, tile); accumulate with += into c[i0:i0+tile, j0:j0+tile] (slices stop at the edge by themselves)')


def bias_gelu_forward(h, bias):
    """Exercise 6.4: the first MLP layer's bias add and its GELU, in one function.

    h (..., F) floats, bias (F,) added to every row. With u = h + bias, return
    (out, u): out = gelu(u) = 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))), GPT-2's
    tanh GELU (GELU_COEFF and GELU_CUBIC above), and u, the pre-activation the backward
    pass needs. Both of h's shape and dtype (float32 in, float32 out). Do not change h."""
    raise NotImplementedError('u = h + bias (a new array, not h += bias); out = 0.5 * u * (1 + np.tanh(GELU_COEFF * (u + GELU_CUBIC * u**3)))')


def bias_gelu_backward(dout, u):
    """Exercise 6.5: the gradients of bias_gelu_forward (6.4).

    dout (..., F) is the gradient of the loss with respect to out; u (..., F) is the
    pre-activation h + bias that the forward returned. Return (dh, dbias): dh of h's shape
    (the same as u's), dbias of shape (F,), both in dout's dtype. gelu's derivative is
        gelu'(u) = 0.5 (1 + t) + 0.5 u (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 u^2),
        t = tanh(sqrt(2/pi) (u + 0.044715 u^3)),
    and the bias was added to every row."""
    raise NotImplementedError("du = dout * gelu'(u) is dh as well (u = h + bias passes it through); dbias sums du over every axis but the last")


def ring_allreduce(buffers):
    """Exercise 6.6: a ring all-reduce of N ranks' gradient buffers, simulated in one process.

    buffers is a list of N 1-D arrays of one length P and dtype, buffers[r] on rank r.
    Split the positions into N chunks with np.array_split(np.arange(P), N) (chunk c).
    Rank r sends only to rank (r + 1) % N. Then:
      reduce-scatter, steps s = 0 .. N-2: every rank r sends its chunk (r - s) % N, and its
        receiver adds it to its own copy of that chunk. After these steps rank r holds the
        full sum of chunk (r + 1) % N.
      all-gather, steps s = 0 .. N-2: every rank r sends its chunk (r + 1 - s) % N, and its
        receiver replaces its own copy of that chunk with it.
    Within a step, every rank sends what it held before the step (simulate a step as: all
    ranks send, then all receive). Return (results, sent): results, a list of N new arrays
    (rank r's buffer at the end; every one equals the sum of all buffers, added in the
    ring's order, each addition in the buffers' dtype as a real rank would do it), and sent, a list of N Python ints, the number of elements rank r sent.
    Do not change the input buffers. With N = 1 nothing is sent."""
    raise NotImplementedError('copy every buffer; each step, collect (receiver, chunk, values copied) from every rank first, then apply them (+= in reduce-scatter, = in all-gather)')


def step_time_line(steps, rounds, clock=time.perf_counter):
    """Exercise 6.7: how much of a training step does not shrink with the batch.

    steps is a dict {batch size: a function that runs one training step at that size},
    its functions already warmed up. Call each exactly `rounds` times, in interleaved
    rounds: every round calls every function once, in the dict's order, timing each call
    on its own with clock() (read just before and just after it), so that a slow spell of
    the machine falls on every batch size alike instead of on one. Take each batch size's
    median over the rounds and fit a straight line to the (batch size, median) points by
    least squares:  seconds per step ~ fixed + per_row * batch_size.
    Return (fixed, per_row, medians): two Python floats, in clock units, and the dict
    {batch size: its median}. rounds >= 1, at least two batch sizes."""
    raise NotImplementedError('a list of durations per batch size, filled round by round; np.median of each; np.polyfit(sizes, medians, 1) returns the slope first')

"""Chapter 3 exercises: the pieces of a GPT, forward and backward.

Seven exercises, in the order of the reading (chapters/03-gpt/README.md):

    3.1  embedding_backward   the gradient of a lookup, with repeated tokens
    3.2  layernorm_forward    normalise each row, then scale and shift
    3.3  layernorm_backward   dx, dweight, dbias of layernorm
    3.4  gelu_backward        the derivative of GPT-2's tanh GELU
    3.5  block_backward       the residual wiring of a pre-LN block, backwards
    3.6  count_params         a GPT's parameter count from its sizes
    3.7  stream_std_through_depth   measure: the residual stream's size, block by block

Fill in the functions of exercises.py (this chapter's folder), replacing each
`raise NotImplementedError(...)`, and keep their names and signatures. Grade them with

    python -m minigpt grade 03

Every backward pass is graded against central finite differences of a reference forward
in float64 (relative error below 1e-7), on shapes the file does not show you. Arrays are
NumPy arrays (float64 when graded). Use `minigpt.layers` wherever an exercise
says so, and nothing from `minigpt.model` before exercise 3.7 (exercise 3.6 asks you to
count by hand).
"""

import math

import numpy as np

from minigpt import layers

LAYERNORM_EPS = 1e-5  # GPT-2's epsilon, inside the square root
GELU_COEFF = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715


def embedding_backward(dout, idx, vocab_size, block_size):
    """Exercise 3.1: the backward pass of the token + position embedding.

    The forward is x[b, t] = wte[idx[b, t]] + wpe[t] (minigpt.layers.embedding_forward).
    dout (B, T, C) is dLoss/dx; idx (B, T) holds token ids in [0, vocab_size).
    Return (dwte, dwpe): dwte of shape (vocab_size, C) and dwpe of shape (block_size, C),
    both of dout's dtype (float32 in, float32 out). A token that occurs several times in
    idx receives the sum of all its gradients; rows of tokens that do not occur, and
    positions t >= T, get zeros. Do not change dout."""
    raise NotImplementedError('dwte = np.zeros((vocab_size, C), dout.dtype), then np.add.at(dwte, idx, dout) (dwte[idx] += dout loses repeats); dwpe sums over b')


def layernorm_forward(x, weight, bias):
    """Exercise 3.2: layer normalisation over the last axis.

    x (..., C); weight, bias (C,). For each row: mean and variance over its C entries (the
    biased variance, dividing by C), xhat = (x - mean) / sqrt(var + 1e-5), and
    out = xhat * weight + bias. Return out, of x's shape and dtype; do not change x."""
    raise NotImplementedError('mean and variance over the last axis (keepdims=True), dividing by C; eps goes inside the square root')


def layernorm_backward(dout, x, weight):
    """Exercise 3.3: the backward pass of layernorm_forward.

    dout (..., C) is dLoss/dout; x (..., C) and weight (C,) are the forward's inputs
    (recompute the mean, rstd = 1/sqrt(var + 1e-5) and xhat from them).
    Return (dx, dweight, dbias): dx of x's shape; dweight and dbias of shape (C,), summed
    over every row; all three of dout's dtype (float32 in, float32 out). Do not change dout
    or x. The reading derives dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), with
    g = dout * weight and the means over the last axis."""
    raise NotImplementedError('g = dout * weight; dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); dweight and dbias sum over all rows')


def gelu_backward(dout, x):
    """Exercise 3.4: the backward pass of GPT-2's GELU.

    The forward is gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
    elementwise (minigpt.layers.gelu_forward). dout and x have the same shape and dtype.
    Return dx = dout * gelu'(x), of x's shape and dtype. Do not change dout or x."""
    raise NotImplementedError("product rule: gelu' = 0.5 (1 + tanh u) + 0.5 x (1 - tanh(u)^2) du/dx")


def block_forward(x, ln_1_weight, ln_1_bias, attn_weight, attn_bias, attn_proj_weight, attn_proj_bias,
                  ln_2_weight, ln_2_bias, fc_weight, fc_bias, mlp_proj_weight, mlp_proj_bias, n_head):
    """Given (not an exercise): one pre-LN transformer block, as GPT-2's, from minigpt.layers.

        m = x + attention(ln_1(x))       the first residual connection
        out = m + mlp(ln_2(m))           the second

    x (B, T, C). Returns out (B, T, C) and the cache block_backward receives: the caches of
    the four sublayers, (ln_1, attention, ln_2, mlp), each as minigpt.layers returns it."""
    a, ln_1 = layers.layernorm_forward(x, ln_1_weight, ln_1_bias)
    a, attention = layers.attention_forward(a, attn_weight, attn_bias, attn_proj_weight, attn_proj_bias, n_head)
    m = x + a  # (B, T, C)
    h, ln_2 = layers.layernorm_forward(m, ln_2_weight, ln_2_bias)
    h, mlp = layers.mlp_forward(h, fc_weight, fc_bias, mlp_proj_weight, mlp_proj_bias)
    return m + h, (ln_1, attention, ln_2, mlp)


def block_backward(dout, cache):
    """Exercise 3.5: the backward pass of block_forward.

    dout (B, T, C) is dLoss/dout; cache is block_forward's. Use minigpt.layers'
    layernorm_backward, attention_backward and mlp_backward for the sublayers: what you
    write is the wiring, the two residual connections. Each takes (dout, its forward's
    cache) and returns the gradient of its input first, then its parameters' in the order
    of its forward's arguments:
        layernorm_backward -> (dx, dweight, dbias)
        attention_backward -> (dx, dattn_weight, dattn_bias, dproj_weight, dproj_bias)
        mlp_backward       -> (dx, dfc_weight, dfc_bias, dproj_weight, dproj_bias)
    Do not change dout: a residual
    connection passes it on unchanged, so it is needed whole. Return the 13 gradients of
    block_forward's array arguments, each of its argument's shape, in its order:
        (dx, dln_1_weight, dln_1_bias, dattn_weight, dattn_bias, dattn_proj_weight,
         dattn_proj_bias, dln_2_weight, dln_2_bias, dfc_weight, dfc_bias,
         dmlp_proj_weight, dmlp_proj_bias)"""
    raise NotImplementedError("a sum passes its gradient to both addends: dm = dout + (MLP branch's gradient), dx = dm + (attention's)")


def count_params(vocab_size, block_size, n_layer, n_embd, bias=True):
    """Exercise 3.6: the number of parameters of a GPT (as minigpt's and GPT-2's).

    The model: a token embedding (vocab_size, n_embd) that is also the output head (tied:
    stored once); a position embedding (block_size, n_embd); n_layer blocks, each with
    ln_1, attention (c_attn: n_embd -> 3 n_embd, c_proj: n_embd -> n_embd), ln_2 and an
    MLP (c_fc: n_embd -> 4 n_embd, c_proj: 4 n_embd -> n_embd); a final layernorm ln_f.
    A layernorm has a weight (n_embd,) and a bias (n_embd,); a linear layer has a weight
    (n_in, n_out) and a bias (n_out,). With bias=False there are no biases anywhere (neither
    in the linear layers nor in the layernorms). Return the count as a Python int.
    (The number of heads is not an argument: why does it not change the count?)"""
    raise NotImplementedError('add up every weight and bias shape of the model; the tied head adds nothing')


def stream_std_through_depth(n_layer, n_embd, gpt2_scaling, seed=0):
    """Exercise 3.7 (a measurement): the size of the residual stream, block by block.

    Build a freshly initialised model, minigpt.model.GPT(GPTConfig(vocab_size=2,
    block_size=8, n_layer=n_layer, n_head=2, n_embd=n_embd), seed=seed, dtype=np.float64),
    and a stream x0 = np.random.default_rng([seed, 1]).standard_normal((2, 8, n_embd)) (a
    random stream of its own: default_rng(seed) would repeat the model's weights). For
    l = 0, 1, ..., n_layer, run x0 through the model's first l blocks with
    minigpt.residual.stack_forward(x0, params, l, 2, "pre-LN") (its first return value is
    the stream after block l - 1; for l = 0 it is x0) and measure the standard deviation
    of all its entries (np.std). Return the n_layer + 1 values as a float64 array.

    minigpt starts the two projections that write into the stream (the weights whose names
    end in "c_proj.weight") with a standard deviation divided by sqrt(2 n_layer), GPT-2's
    rule (section 8). With gpt2_scaling=False, measure the same model without that rule:
    multiply those weights of model.params by sqrt(2 n_layer) first. Compare the two at
    n_layer = 24, n_embd = 64: what does the rule keep in check?"""
    raise NotImplementedError('params = model.params (a dict of arrays); scale the c_proj weights if asked, then one stack_forward per l')

"""The residual stream, measured: how much of the gradient at the top of a stack of blocks
reaches the bottom unchanged, for three ways of wiring the same sublayers.

    "pre-LN"  (GPT-2, minigpt):          x = x + attn(ln_1(x));   x = x + mlp(ln_2(x))
    "post-LN" (the 2017 transformer,     x = ln_1(x + attn(x));   x = ln_2(x + mlp(x))
               GPT-1)
    "none"    (no residual connection):  x = attn(ln_1(x));       x = mlp(ln_2(x))

The sublayers are minigpt.layers' and the weights are those of a freshly initialised GPT
(float64), so only the wiring differs. The backward of x + f(x) is dx + f'(x)^T dx: the
upstream gradient passes through the sum unchanged, whatever f does. Chapter 3 plots
`share_of_top_gradient` for the three wirings.
"""

from __future__ import annotations

import numpy as np

from minigpt import layers
from minigpt.model import GPT, GPTConfig

WIRINGS = ("pre-LN", "post-LN", "none")
LABELS = {"pre-LN": "pre-LN (GPT-2)", "post-LN": "post-LN (2017 transformer, GPT-1)", "none": "no residual"}


def _sublayers(p, i, n_head):
    """The two sublayers of block i as (layernorm prefix, forward, backward) triples."""
    h = f"h.{i}."

    def attention(x):
        return layers.attention_forward(x, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"],
                                        p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"], n_head)

    def mlp(x):
        return layers.mlp_forward(x, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"],
                                  p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])

    return [(h + "ln_1", attention, layers.attention_backward), (h + "ln_2", mlp, layers.mlp_backward)]


def stack_forward(x, params, n_layer: int, n_head: int, wiring: str):
    """x (B, T, C) through blocks 0..n_layer-1 of a GPT's params, wired as `wiring`.
    Returns the top of the stack (B, T, C) and the cache stack_backward needs."""
    if wiring not in WIRINGS:
        raise ValueError(f"wiring must be one of {WIRINGS}, got {wiring!r}")
    steps = []  # per sublayer: (its layernorm's cache, its own cache, its backward)
    for i in range(n_layer):
        for ln, forward, backward in _sublayers(params, i, n_head):
            w, b = params[ln + ".weight"], params[ln + ".bias"]
            if wiring == "pre-LN":
                a, ln_cache = layers.layernorm_forward(x, w, b)
                f, f_cache = forward(a)
                x = x + f  # (B, T, C)
            elif wiring == "post-LN":
                f, f_cache = forward(x)
                x, ln_cache = layers.layernorm_forward(x + f, w, b)
            else:
                a, ln_cache = layers.layernorm_forward(x, w, b)
                x, f_cache = forward(a)
            steps.append((ln_cache, f_cache, backward))
    return x, (wiring, steps)


def stack_backward(dtop, cache) -> list[np.ndarray]:
    """[dL/dx_0, dL/dx_1, ..., dL/dx_top]: the gradient at the input of every block, then at
    the top (dtop itself), for the stack that stack_forward ran."""
    wiring, steps = cache
    dx = dtop
    grads = [dx]
    for ln_cache, f_cache, backward in reversed(steps):
        if wiring == "pre-LN":  # x + f(ln(x)): dx passes the sum unchanged, plus the branch's
            dx = dx + layers.layernorm_backward(backward(dx, f_cache)[0], ln_cache)[0]
        elif wiring == "post-LN":  # ln(x + f(x)): every gradient goes through the layernorm first
            ds = layers.layernorm_backward(dx, ln_cache)[0]
            dx = ds + backward(ds, f_cache)[0]
        else:  # f(ln(x)): only the branch
            dx = layers.layernorm_backward(backward(dx, f_cache)[0], ln_cache)[0]
        grads.append(dx)
    block_inputs = grads[::2]  # two sublayers a block: keep the gradient at each block's input
    return block_inputs[::-1]


def gradients_through_depth(wiring: str, n_layer: int = 24, n_embd: int = 64, n_head: int = 4,
                            seq_len: int = 16, batch: int = 2, seed: int = 0) -> list[np.ndarray]:
    """stack_backward's gradients for the blocks of a freshly initialised GPT (float64), a
    random x_0 of unit scale (as a layernorm's output) and L = sum(x_top * g) for a random g."""
    config = GPTConfig(vocab_size=2, block_size=seq_len, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
    params = GPT(config, seed=seed, dtype=np.float64).params
    rng = np.random.default_rng([seed, 7])
    x = rng.standard_normal((batch, seq_len, n_embd))  # (B, T, C)
    top, cache = stack_forward(x, params, n_layer, n_head, wiring)
    return stack_backward(rng.standard_normal(top.shape), cache)


def share_of_top_gradient(grads: list[np.ndarray]) -> np.ndarray:
    """For every l, how much of the top gradient g = dL/dx_top is in dL/dx_l: the coefficient
    c_l of the projection of dL/dx_l on g, c_l = <dL/dx_l, g> / <g, g>. 1 where g arrives
    whole (whatever else is added to it), about 0 where nothing of it is left."""
    top = grads[-1].ravel()
    return np.array([g.ravel() @ top / (top @ top) for g in grads])

"""The grader of chapter 3: python -m minigpt grade 03 (see solutions.py's docstring).

The oracles are minigpt's own layers and model (never the chapter's solutions): every
backward pass is checked against central finite differences of minigpt.layers' forward,
so a wrong forward cannot hide a wrong backward; the parameter count against
minigpt.model.count_params, an allocated model, and GPT-2 small's published checkpoint;
the residual stream's size against a pass through the blocks written with minigpt.layers."""

import math

import numpy as np
import pytest

from minigpt import layers
from minigpt.course import checks
from minigpt.course.grading import ex, exercise  # noqa: F401  (ex is a fixture)
from minigpt.gradcheck import rel_error
from minigpt.model import GPT, GPTConfig, count_params


def randn(rng, *shape, scale=1.0, shift=0.0):
    return rng.standard_normal(shape) * scale + shift


def expect_unchanged(function, inputs: dict, after_call: dict, hint: str = "work on a copy") -> None:
    """The function left each of its input arrays as it was (after_call: the same arrays, now)."""
    for name, before in inputs.items():
        checks.expect(np.array_equal(after_call[name], before),
                      f"{function} changed its input {name} in place ({hint}): the caller still needs it")


def float32(rng, *shape, scale=1.0, shift=0.0):
    return randn(rng, *shape, scale=scale, shift=shift).astype(np.float32)


# The backward passes keep their inputs' dtype: float32 in, float32 out, and float64 in,
# float64 out (an answer that makes everything float32 is off by only ~3e-8 in float64,
# under the finite-difference bar of 1e-7: its dtype shows it). Against minigpt.layers,
# with a bar for each dtype: float32's rounding, and float64's (1e-10).
def in_each_dtype(float32_bar):
    return pytest.mark.parametrize("dtype, bar", [(np.float32, float32_bar), (np.float64, 1e-10)],
                                   ids=["float32", "float64"])


# --- 3.1 embedding_backward ----------------------------------------------------------------


@exercise("embedding_backward")
@pytest.mark.parametrize("B, T, vocab_size, block_size, C", [(3, 5, 4, 8, 3), (1, 1, 6, 4, 5), (2, 7, 9, 7, 2)])
def test_embedding_backward_matches_finite_differences(ex, B, T, vocab_size, block_size, C):
    rng = np.random.default_rng(B * 100 + T)
    idx = rng.integers(0, vocab_size, (B, T))
    if T > 2:
        idx[0, :3] = [1, 0, 1]  # a token repeated inside one sequence
    if B > 1:
        idx[1, 0] = idx[0, 0]  # and across sequences
    checks.expect_gradients(
        lambda wte, wpe: layers.embedding_forward(idx, wte, wpe),
        lambda dout, cache: ex.embedding_backward(dout, idx, vocab_size, block_size),
        (randn(rng, vocab_size, C), randn(rng, block_size, C)), ("dwte", "dwpe"))


@exercise("embedding_backward")
def test_a_token_used_twice_gets_both_gradients(ex):
    dout = np.arange(1.0, 7.0).reshape(1, 3, 2)  # rows (1, 2), (3, 4), (5, 6)
    dwte, _ = ex.embedding_backward(dout, np.array([[2, 0, 2]]), 4, 3)
    checks.expect_array("dwte", dwte, shape=(4, 2))
    checks.expect_close("dwte[2] for idx [[2, 0, 2]] (token 2 at positions 0 and 2)", dwte[2], np.array([6.0, 8.0]))


@exercise("embedding_backward")
@in_each_dtype(float32_bar=1e-6)
def test_embedding_backward_keeps_the_dtype_and_leaves_dout_alone(ex, dtype, bar):
    rng = np.random.default_rng(31)
    dout, idx = randn(rng, 2, 3, 4).astype(dtype), np.array([[1, 0, 1], [2, 1, 0]])
    given = dout.copy()
    dwte, dwpe = ex.embedding_backward(given, idx, 5, 6)
    expect_unchanged("embedding_backward", {"dout": dout}, {"dout": given})
    what = f"for a {np.dtype(dtype)} dout"
    checks.expect_array(f"dwte {what}", dwte, shape=(5, 4), dtype=dtype)
    checks.expect_array(f"dwpe {what}", dwpe, shape=(6, 4), dtype=dtype)
    _, cache = layers.embedding_forward(idx, np.zeros((5, 4)), np.zeros((6, 4)))
    want_dwte, want_dwpe = layers.embedding_backward(dout, cache)
    checks.expect_close(f"dwte {what}", dwte, want_dwte, bar=bar)
    checks.expect_close(f"dwpe {what}", dwpe, want_dwpe, bar=bar)


# --- 3.2 layernorm_forward ----------------------------------------------------------------


def layernorm_cases():
    rng = np.random.default_rng(32)
    yield "x (4, 7)", randn(rng, 4, 7, scale=2.0, shift=1.0), randn(rng, 7), randn(rng, 7)
    yield "x (2, 3, 5)", randn(rng, 2, 3, 5), randn(rng, 5), randn(rng, 5)
    yield "rows of small variance (std 0.003)", randn(rng, 3, 6, scale=0.003, shift=5.0), randn(rng, 6), randn(rng, 6)
    yield "one channel (C = 1)", randn(rng, 2, 4, 1), randn(rng, 1), randn(rng, 1)


@exercise("layernorm_forward")
def test_layernorm_forward_matches_minigpt(ex):
    for what, x, weight, bias in layernorm_cases():
        given = x.copy()
        got = ex.layernorm_forward(given, weight, bias)
        expect_unchanged("layernorm_forward", {"x": x}, {"x": given})
        want, _ = layers.layernorm_forward(x, weight, bias)
        checks.expect_close(f"layernorm_forward, {what}", got, want, bar=1e-9)


@exercise("layernorm_forward")
def test_layernorm_forward_rows_have_mean_0_and_variance_1(ex):
    x = randn(np.random.default_rng(5), 6, 11, scale=3.0, shift=-2.0)
    out = ex.layernorm_forward(x, np.ones(11), np.zeros(11))
    checks.expect_array("layernorm_forward output", out, shape=x.shape)
    worst_mean = float(np.abs(out.mean(axis=-1)).max())
    checks.expect(worst_mean < 1e-12,
                  f"the output rows (weight 1, bias 0) must have mean 0; one has mean {worst_mean:.2e}")
    variance = out.var(axis=-1)  # var / (var + eps), just below 1
    checks.expect_close("the variance of each output row", variance, x.var(axis=-1) / (x.var(axis=-1) + 1e-5), bar=1e-9)


@exercise("layernorm_forward")
def test_layernorm_forward_keeps_float32(ex):
    rng = np.random.default_rng(35)
    x, weight, bias = float32(rng, 3, 2, 8), float32(rng, 8), float32(rng, 8)
    out = checks.expect_array("layernorm_forward output for a float32 x", ex.layernorm_forward(x, weight, bias),
                              shape=x.shape, dtype=np.float32)
    checks.expect_close("layernorm_forward output for a float32 x", out, layers.layernorm_forward(x, weight, bias)[0],
                        bar=1e-5)


# Rows of mean 10 and std 0.1 in float32, against the maths in float64: the variance as
# mean((x - mean)^2) keeps float32's precision (relative error below 1e-5 here), as
# mean(x^2) - mean^2 does not (two numbers near 100 subtracted: about 1e-4 off).
FAR_FROM_ZERO = "float32 rows far from zero (mean 10, std 0.1)"
CANCELLATION_HINT = "is the variance mean(x^2) - mean^2? It cancels in float32: use mean((x - mean)^2)"


def float32_rows_far_from_zero(rng, *shape):
    return float32(rng, *shape, scale=0.1, shift=10.0)


def in_float64(*arrays):
    return tuple(a.astype(np.float64) for a in arrays)


@exercise("layernorm_forward")
def test_layernorm_forward_of_float32_rows_far_from_zero(ex):
    rng = np.random.default_rng(40)
    x, weight, bias = float32_rows_far_from_zero(rng, 3, 4, 16), float32(rng, 16), float32(rng, 16)
    what = f"layernorm_forward output for {FAR_FROM_ZERO}"
    out = checks.expect_array(what, ex.layernorm_forward(x, weight, bias), shape=x.shape, dtype=np.float32)
    want, _ = layers.layernorm_forward(*in_float64(x, weight, bias))
    checks.expect_close(f"{what}, against float64 maths ({CANCELLATION_HINT})", out, want, bar=3e-5)


# --- 3.3 layernorm_backward ---------------------------------------------------------------


def layernorm_with_inputs_as_cache(x, weight, bias):
    out, _ = layers.layernorm_forward(x, weight, bias)
    return out, (x, weight)


@exercise("layernorm_backward")
def test_layernorm_backward_leaves_its_inputs_alone(ex):
    rng = np.random.default_rng(33)
    inputs = {"dout": randn(rng, 2, 3, 5), "x": randn(rng, 2, 3, 5), "weight": randn(rng, 5)}
    given = {name: a.copy() for name, a in inputs.items()}
    ex.layernorm_backward(given["dout"], given["x"], given["weight"])
    expect_unchanged("layernorm_backward", inputs, given)


@exercise("layernorm_backward")
@pytest.mark.parametrize("shape", [(3, 4, 6), (1, 1, 5), (5, 3)])
def test_layernorm_backward_matches_finite_differences(ex, shape):
    rng = np.random.default_rng(sum(shape))
    C = shape[-1]
    args = (randn(rng, *shape, scale=1.5, shift=0.5), randn(rng, C, shift=1.0), randn(rng, C))
    checks.expect_gradients(layernorm_with_inputs_as_cache,
                            lambda dout, cache: ex.layernorm_backward(dout, *cache), args, ("dx", "dweight", "dbias"))


@exercise("layernorm_backward")
@in_each_dtype(float32_bar=1e-4)
def test_layernorm_backward_keeps_the_dtype(ex, dtype, bar):
    rng = np.random.default_rng(36)
    dout, x, weight = (a.astype(dtype) for a in (randn(rng, 4, 3, 6), randn(rng, 4, 3, 6), randn(rng, 6, shift=1.0)))
    got = ex.layernorm_backward(dout, x, weight)
    _, cache = layers.layernorm_forward(x, weight, np.zeros(6, dtype))
    for name, value, want in zip(("dx", "dweight", "dbias"), got, layers.layernorm_backward(dout, cache)):
        what = f"{name} for {np.dtype(dtype)} inputs"
        checks.expect_array(what, value, shape=want.shape, dtype=dtype)
        checks.expect_close(what, value, want, bar=bar)


@exercise("layernorm_backward")
def test_layernorm_backward_of_float32_rows_far_from_zero(ex):
    rng = np.random.default_rng(41)
    dout, x, weight = float32(rng, 3, 4, 16), float32_rows_far_from_zero(rng, 3, 4, 16), float32(rng, 16)
    got = ex.layernorm_backward(dout, x, weight)
    _, cache = layers.layernorm_forward(*in_float64(x, weight, np.zeros(16)))
    for name, value, want in zip(("dx", "dweight", "dbias"), got, layers.layernorm_backward(*in_float64(dout), cache)):
        what = f"{name} for {FAR_FROM_ZERO}"
        checks.expect_array(what, value, shape=want.shape, dtype=np.float32)
        checks.expect_close(f"{what}, against float64 maths ({CANCELLATION_HINT})", value, want, bar=3e-5)


# --- 3.4 gelu_backward --------------------------------------------------------------------


@exercise("gelu_backward")
def test_gelu_backward_leaves_its_inputs_alone(ex):
    rng = np.random.default_rng(37)
    inputs = {"dout": randn(rng, 3, 4), "x": randn(rng, 3, 4, scale=2.0)}
    given = {name: a.copy() for name, a in inputs.items()}
    ex.gelu_backward(given["dout"], given["x"])
    expect_unchanged("gelu_backward", inputs, given, hint="dout *= ... changes the caller's array")


@exercise("gelu_backward")
def test_gelu_backward_matches_finite_differences(ex):
    rng = np.random.default_rng(34)
    for x in (randn(rng, 3, 5, 7, scale=2.0), np.linspace(-6.0, 6.0, 49).reshape(7, 7), randn(rng, 1, 1, 4)):
        checks.expect_gradients(layers.gelu_forward, lambda dout, cache: ex.gelu_backward(dout, cache), (x,), ("dx",))


@exercise("gelu_backward")
@in_each_dtype(float32_bar=1e-5)
def test_gelu_backward_keeps_the_dtype(ex, dtype, bar):
    rng = np.random.default_rng(38)
    dout, x = randn(rng, 2, 9).astype(dtype), randn(rng, 2, 9, scale=2.0).astype(dtype)
    what = f"dx for {np.dtype(dtype)} inputs"
    dx = checks.expect_array(what, ex.gelu_backward(dout, x), shape=x.shape, dtype=dtype)
    checks.expect_close(what, dx, layers.gelu_backward(dout, x)[0], bar=bar)


# --- 3.5 block_backward -------------------------------------------------------------------

BLOCK_GRADIENTS = ("dx", "dln_1_weight", "dln_1_bias", "dattn_weight", "dattn_bias", "dattn_proj_weight",
                   "dattn_proj_bias", "dln_2_weight", "dln_2_bias", "dfc_weight", "dfc_bias", "dmlp_proj_weight",
                   "dmlp_proj_bias")


def reference_block(x, ln_1_w, ln_1_b, attn_w, attn_b, attn_proj_w, attn_proj_b, ln_2_w, ln_2_b,
                    fc_w, fc_b, mlp_proj_w, mlp_proj_b, n_head):
    """A pre-LN block built here from minigpt.layers, with the cache the exercise describes."""
    a, ln_1 = layers.layernorm_forward(x, ln_1_w, ln_1_b)
    a, attention = layers.attention_forward(a, attn_w, attn_b, attn_proj_w, attn_proj_b, n_head)
    m = x + a
    h, ln_2 = layers.layernorm_forward(m, ln_2_w, ln_2_b)
    h, mlp = layers.mlp_forward(h, fc_w, fc_b, mlp_proj_w, mlp_proj_b)
    return m + h, (ln_1, attention, ln_2, mlp)


def block_parameters(rng, C):
    def ln():
        return randn(rng, C, scale=0.2, shift=1.0), randn(rng, C, scale=0.2)

    def linear(n_in, n_out):
        return randn(rng, n_in, n_out, scale=0.4), randn(rng, n_out, scale=0.1)

    return (*ln(), *linear(C, 3 * C), *linear(C, C), *ln(), *linear(C, 4 * C), *linear(4 * C, C))


@exercise("block_backward")
def test_block_backward_leaves_dout_alone(ex):
    rng = np.random.default_rng(39)
    _, cache = reference_block(randn(rng, 2, 3, 6), *block_parameters(rng, 6), n_head=2)
    dout = randn(rng, 2, 3, 6)
    given = dout.copy()
    ex.block_backward(given, cache)
    expect_unchanged("block_backward", {"dout": dout}, {"dout": given},
                     hint="dm = dout; dm += ... is dout itself: write dm = dout + ...")


@exercise("block_backward")
@pytest.mark.parametrize("B, T, C, n_head", [(2, 5, 8, 2), (1, 1, 6, 3)])
def test_block_backward_matches_finite_differences(ex, B, T, C, n_head):
    rng = np.random.default_rng(B * 10 + T)
    params = block_parameters(rng, C)
    checks.expect_gradients(lambda *args: reference_block(*args, n_head=n_head),
                            lambda dout, cache: ex.block_backward(dout, cache),
                            (randn(rng, B, T, C), *params), BLOCK_GRADIENTS)


# --- 3.6 count_params ---------------------------------------------------------------------

# OpenAI's GPT-2 small checkpoint holds 124,439,808 numbers (its tensors' shapes summed).
GPT2_SMALL_PARAMETERS = 124_439_808


@exercise("count_params")
@pytest.mark.parametrize("vocab_size, block_size, n_layer, n_embd, bias", [
    (97, 13, 3, 20, True), (97, 13, 3, 20, False), (5, 1, 1, 2, True), (50257, 2048, 96, 12288, False),
])  # fmt: skip
def test_count_params_equals_minigpts_count(ex, vocab_size, block_size, n_layer, n_embd, bias):
    got = ex.count_params(vocab_size, block_size, n_layer, n_embd, bias)
    config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=1, n_embd=n_embd,
                       bias=bias)
    kind = type(got).__name__ if type(got).__module__ == "builtins" else f"{type(got).__module__}.{type(got).__name__}"
    checks.expect(isinstance(got, int) and not isinstance(got, bool),  # np.int64 is not an int (and wraps at 2**63)
                  f"count_params returned a {kind}, expected a Python int (the docstring asks for one: int(...))")
    checks.expect_equal(f"count_params({vocab_size}, {block_size}, {n_layer}, {n_embd}, bias={bias})",
                        int(got), count_params(config))


@exercise("count_params")
def test_count_params_of_gpt2_small_and_an_allocated_model(ex):
    checks.expect_equal("count_params of GPT-2 small (50257, 1024, 12, 768)",
                        int(ex.count_params(50257, 1024, 12, 768)), GPT2_SMALL_PARAMETERS)
    for bias in (True, False):
        model = GPT(GPTConfig(vocab_size=23, block_size=9, n_layer=2, n_head=2, n_embd=6, bias=bias))
        checks.expect_equal(f"count_params(23, 9, 2, 6, bias={bias}) against the size of an allocated model",
                            int(ex.count_params(23, 9, 2, 6, bias)), model.flat_params.size)


# --- 3.7 stream_std_through_depth ---------------------------------------------------------


def measured_stream_stds(n_layer, n_embd, gpt2_scaling, seed):
    """The stream's std after each block, in one pass through the blocks, written with
    minigpt.layers (not residual.stack_forward, which the exercise uses)."""
    config = GPTConfig(vocab_size=2, block_size=8, n_layer=n_layer, n_head=2, n_embd=n_embd)
    p = GPT(config, seed=seed, dtype=np.float64).params
    undo = 1.0 if gpt2_scaling else math.sqrt(2 * n_layer)
    x = np.random.default_rng([seed, 1]).standard_normal((2, 8, n_embd))
    stds = [x.std()]
    for i in range(n_layer):
        h = f"h.{i}."
        a, _ = layers.layernorm_forward(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"])
        a, _ = layers.attention_forward(a, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"],
                                        undo * p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"], 2)
        x = x + a
        m, _ = layers.layernorm_forward(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"])
        m, _ = layers.mlp_forward(m, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"],
                                  undo * p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])
        x = x + m
        stds.append(x.std())
    return np.array(stds)


# Each call's flags, in this order: the repeats catch a call that changes what a later one
# sees (a model kept between calls and scaled in place).
CALLS = (True, False, False, True)


@exercise("stream_std_through_depth")
@pytest.mark.parametrize("n_layer, n_embd, seed", [(1, 8, 3), (3, 16, 5), (7, 12, 1)])
def test_stream_std_through_depth_matches_a_measurement(ex, n_layer, n_embd, seed):
    for call, gpt2_scaling in enumerate(CALLS, 1):
        got = ex.stream_std_through_depth(n_layer, n_embd, gpt2_scaling, seed)
        what = f"stream_std_through_depth({n_layer}, {n_embd}, gpt2_scaling={gpt2_scaling}, seed={seed})"
        if call > CALLS.index(gpt2_scaling) + 1:
            what += (f", call {call} of gpt2_scaling={', '.join(map(str, CALLS))} (the same call gave the right "
                     "values before: build a fresh model each call, do not scale one an earlier call kept)")
        checks.expect_array(what, got, shape=(n_layer + 1,), dtype=np.float64)
        want = measured_stream_stds(n_layer, n_embd, gpt2_scaling, seed)
        # the model in float32 (GPT's default dtype) measures stds off by 9e-10 to 2e-8; float64 by ~1e-16
        error = rel_error(got, want)
        checks.expect(not 1e-11 <= error < 1e-7,
                      f"{what}: relative error {error:.1e} from the measurement, bar 1e-11: the size of float32 "
                      "rounding; build the model in float64, GPT(..., dtype=np.float64), as the docstring does")
        checks.expect_close(what, got, want, bar=1e-11)

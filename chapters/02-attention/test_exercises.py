"""The grader of chapter 2: `python -m minigpt grade 02` runs it on exercises.py.

Forward answers are compared with the package (minigpt.kernels.reference, minigpt.layers)
on shapes and seeds the exercises never mention; backward answers are checked against
central finite differences of the package's forward, so a wrong forward cannot hide a
wrong backward; the measurement is recomputed here from its recipe. Every array answer is
also checked to keep its dtype (float32 as float32, float64 as float64) and to leave its
arguments unchanged; scores large enough to overflow exp check that softmax is shifted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from minigpt import layers
from minigpt.course import checks
from minigpt.course.grading import ex, exercise  # noqa: F401  (ex is a fixture)
from minigpt.kernels import reference


def call(ex, name: str, **arguments):
    """The student's function `name` on these arguments (passed in order), failing with a
    clear message if it changed one of them in place."""
    saved = {key: np.array(value, copy=True) for key, value in arguments.items() if isinstance(value, np.ndarray)}
    result = getattr(ex, name)(*arguments.values())
    for key, before in saved.items():
        checks.expect(np.array_equal(arguments[key], before),
                      f"{name} changed its argument {key} in place: work on a new array "
                      f"(write {key} = {key} - ..., not {key} -= ...)")
    return result


def expect_float32(what: str, got) -> np.ndarray:
    got = checks.expect_array(what, got)
    checks.expect(got.dtype == np.float32,
                  f"{what}: dtype {got.dtype}, expected float32, the inputs' dtype (a float64 constant such as "
                  f"np.sqrt(n), or a float64 mask, upcasts)")
    return got


def expect_float64(what: str, got, shape) -> np.ndarray:
    got = checks.expect_array(what, got, shape=shape)
    checks.expect(got.dtype == np.float64,
                  f"{what}: dtype {got.dtype}, expected float64, the input's dtype (a cast such as "
                  f"x.astype(np.float32) loses half the digits: keep the dtype you are given)")
    return got


def with_context(context: str, check, *args, **kwargs):
    """Run a check; its failure message starts with the context (the input's shape)."""
    try:
        check(*args, **kwargs)
    except checks.Wrong as err:
        raise checks.Wrong(f"{context}: {err}") from None


# --- 2.1 softmax ------------------------------------------------------------------------------


@exercise("softmax")
@pytest.mark.parametrize("shape, seed", [((3, 7), 1), ((2, 4, 5), 2), ((1, 1), 3), ((6, 2), 4), ((5,), 6)])
def test_softmax_matches_the_definition(ex, shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    y = expect_float64(f"softmax(x) of shape {shape}", call(ex, "softmax", x=x), shape)
    sums = y.sum(axis=-1)
    checks.expect(np.allclose(sums, 1.0, atol=1e-9),
                  f"softmax(x) of shape {shape}: rows (last axis) must sum to 1, "
                  f"one sums to {sums.flat[np.argmax(np.abs(sums - 1))]:.6g}")
    checks.expect_close(f"softmax(x) of shape {shape}", y, reference.softmax_forward(x), bar=1e-10)


def expect_softmax_of(ex, what: str, x, hint: str):
    """softmax(x) against the reference, for x as given and as one (1, rows, N) batch: a
    shift shared by a whole matrix, not each row's own, fails only on the batch."""
    for shaped, name in [(x, what), (x[None], f"{what}, as x[None] of shape {(1, *x.shape)}")]:
        y = expect_float64(f"{name} ({hint})", call(ex, "softmax", x=shaped), shaped.shape)
        checks.expect_close(f"{name} ({hint})", y, reference.softmax_forward(shaped), bar=1e-10)


@exercise("softmax")
def test_softmax_does_not_overflow_on_large_logits(ex):
    x = np.array([[1000.0, 1001.0, 999.0], [-5.0, 710.0, 0.0], [800.0, 800.0, 800.0], [-800.0, 800.0, 0.0]])
    expect_softmax_of(ex, "softmax of rows near 1000 and of [-800, 800, 0]", x,
                      "exp(1000) overflows: subtract each row's max, not its mean or min")


@exercise("softmax")
def test_softmax_of_rows_far_apart(ex):
    rng = np.random.default_rng(5)
    x = np.stack([1000 + rng.standard_normal(6), -1000 + rng.standard_normal(6), rng.standard_normal(6)])
    expect_softmax_of(ex, "softmax of rows near +1000, -1000 and 0", x, "shift each row by its own max")


@exercise("softmax")
def test_softmax_keeps_float32(ex):
    x = (np.random.default_rng(7).standard_normal((4, 9)) * 3).astype(np.float32)
    y = expect_float32("softmax of a float32 x", call(ex, "softmax", x=x))
    checks.expect_close("softmax of a float32 x", y, reference.softmax_forward(x.astype(np.float64)), bar=1e-6)


# --- 2.2 softmax backward ---------------------------------------------------------------------


def _softmax_forward(x):
    y = reference.softmax_forward(x)
    return y, y


@exercise("softmax_backward")
@pytest.mark.parametrize("shape, seed", [((4, 7), 0), ((2, 3, 6), 1), ((5, 1), 2), ((3, 2), 3)])
def test_softmax_backward_matches_finite_differences(ex, shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape) * 2

    def backward(dy, y):  # one array, dx: say so before the gradient check reads a list as several
        return checks.expect_array("softmax_backward's dx", call(ex, "softmax_backward", dy=dy, y=y))

    with_context(f"for x of shape {shape}", checks.expect_gradients, _softmax_forward, backward, (x,), ("dx",),
                 seed=seed)


@exercise("softmax_backward")
def test_softmax_backward_keeps_float32(ex):
    rng = np.random.default_rng(8)
    y = reference.softmax_forward(rng.standard_normal((3, 6)) * 2)
    dy = rng.standard_normal((3, 6))
    dx = expect_float32("dx for float32 dy and y",
                        call(ex, "softmax_backward", dy=dy.astype(np.float32), y=y.astype(np.float32)))
    checks.expect_close("dx for float32 dy and y", dx, reference.softmax_backward(dy, y), bar=1e-5)


# --- 2.3 causal attention ---------------------------------------------------------------------

ATTENTION_SHAPES = [((2, 3, 5, 4), 0), ((1, 1, 1, 3), 1), ((1, 2, 8, 6), 2), ((3, 1, 4, 2), 3)]


def _qkv(shape, seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape) for _ in range(3))


def out_and_att(answer):
    """causal_attention's (out, att): a tuple, or a list, of two."""
    checks.expect(isinstance(answer, (tuple, list)) and len(answer) == 2,
                  f"causal_attention returned {type(answer).__name__}, expected the pair (out, att)")
    return answer


@exercise("causal_attention")
@pytest.mark.parametrize("shape, seed", ATTENTION_SHAPES)
def test_causal_attention_matches_the_reference(ex, shape, seed):
    q, k, v = _qkv(shape, seed)
    B, H, T, hs = shape
    out, att = out_and_att(call(ex, "causal_attention", q=q, k=k, v=v))
    checks.expect_array("att", att, shape=(B, H, T, T))
    checks.expect_array("out", out, shape=shape)
    diagonal = np.diagonal(att, axis1=-2, axis2=-1)  # (B, H, T): what each position gives itself
    checks.expect(np.all(diagonal > 0), "att[..., t, t] is 0 for some t: position t must see itself; "
                                        "mask only the keys j > t")
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    checks.expect(not np.any(att[..., future]), "att puts weight on future positions (key j > query t): "
                                                "mask them before the softmax")
    sums = att.sum(axis=-1)
    checks.expect(np.allclose(sums, 1.0, atol=1e-9), f"att rows must sum to 1 over the visible positions; one "
                                                     f"sums to {sums.flat[np.argmax(np.abs(sums - 1))]:.6g}")
    want_out, want_att = reference.attention_forward(q, k, v)
    checks.expect_close(f"att for (B, H, T, hs) = {shape}", att, want_att, bar=1e-10)
    checks.expect_close(f"out for (B, H, T, hs) = {shape}", out, want_out, bar=1e-10)


@exercise("causal_attention")
def test_the_first_position_sees_only_itself(ex):
    q, k, v = _qkv((1, 1, 5, 3), 7)
    out, att = out_and_att(call(ex, "causal_attention", q=q, k=k, v=v))
    checks.expect_close("att[0, 0, 0] (position 0 can only attend to itself)", np.asarray(att)[0, 0, 0],
                        np.eye(5)[0], bar=1e-12)
    checks.expect_close("out[0, 0, 0] (position 0 can only attend to itself)", np.asarray(out)[0, 0, 0],
                        v[0, 0, 0], bar=1e-12)


@exercise("causal_attention")
def test_causal_attention_keeps_float32(ex):
    q, k, v = (a.astype(np.float32) for a in _qkv((2, 2, 6, 4), 8))
    answer = out_and_att(call(ex, "causal_attention", q=q, k=k, v=v))
    want_out, want_att = reference.attention_forward(*(a.astype(np.float64) for a in (q, k, v)))
    out, att = (expect_float32(f"{name} for float32 q, k, v", a) for name, a in zip(("out", "att"), answer))
    checks.expect_close("att for float32 q, k, v", att, want_att, bar=1e-5)
    checks.expect_close("out for float32 q, k, v", out, want_out, bar=1e-5)


@exercise("causal_attention")
def test_causal_attention_with_large_scores(ex):
    # q and k share a large component, so every score is near +3200: exp overflows unless
    # the softmax subtracts each row's max (your softmax of 2.1 does). A row's scores lie
    # within a few hundred of one another, so masking after exp and renormalising passes too.
    q, k, v = _qkv((2, 2, 6, 4), 12)
    q, k = q + 40, k + 40
    out, att = out_and_att(call(ex, "causal_attention", q=q, k=k, v=v))
    want_out, want_att = reference.attention_forward(q, k, v)
    what = "for q, k near 40 (scores near 3200: exp(3200) overflows, so subtract each row's max before exp)"
    checks.expect_close(f"att {what}", att, want_att, bar=1e-10)
    checks.expect_close(f"out {what}", out, want_out, bar=1e-10)


# --- 2.4 causal attention backward -----------------------------------------------------------


def _attention_forward(q, k, v):
    out, att = reference.attention_forward(q, k, v)
    return out, (q, k, v, att)


@exercise("causal_attention_backward")
@pytest.mark.parametrize("shape, seed", [((2, 2, 5, 4), 0), ((1, 3, 1, 2), 1), ((1, 1, 6, 3), 2), ((2, 1, 3, 5), 3)])
def test_causal_attention_backward_matches_finite_differences(ex, shape, seed):
    q, k, v = _qkv(shape, seed + 10)

    def backward(dout, cache):
        q, k, v, att = cache
        return call(ex, "causal_attention_backward", dout=dout, q=q, k=k, v=v, att=att)

    with_context(f"for (B, H, T, hs) = {shape}", checks.expect_gradients, _attention_forward, backward,
                 (q, k, v), ("dq", "dk", "dv"), seed=seed)


@exercise("causal_attention_backward")
def test_causal_attention_backward_keeps_float32(ex):
    q, k, v = _qkv((2, 2, 5, 3), 9)
    dout = np.random.default_rng(10).standard_normal(q.shape)
    _, att = reference.attention_forward(q, k, v)
    want = reference.attention_backward(dout, q, k, v, att)
    got = call(ex, "causal_attention_backward", dout=dout.astype(np.float32), q=q.astype(np.float32),
               k=k.astype(np.float32), v=v.astype(np.float32), att=att.astype(np.float32))
    checks.expect(isinstance(got, (tuple, list)) and len(got) == 3,
                  "causal_attention_backward must return (dq, dk, dv)")
    for name, grad, expected in zip(("dq", "dk", "dv"), got, want):
        expect_float32(f"{name} for float32 inputs", grad)
        checks.expect_close(f"{name} for float32 inputs", grad, expected, bar=1e-5)


# --- 2.5 multi-head attention -----------------------------------------------------------------


@exercise("multi_head_attention")
@pytest.mark.parametrize("B, T, C, n_head, seed", [(2, 5, 12, 3, 0), (1, 1, 8, 2, 1), (2, 6, 8, 4, 2), (1, 4, 6, 1, 3)])
def test_multi_head_attention_matches_minigpt_layers(ex, B, T, C, n_head, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, C))
    attn_weight, attn_bias = rng.standard_normal((C, 3 * C)) / math.sqrt(C), rng.standard_normal(3 * C)
    proj_weight, proj_bias = rng.standard_normal((C, C)) / math.sqrt(C), rng.standard_normal(C)
    got = call(ex, "multi_head_attention", x=x, attn_weight=attn_weight, attn_bias=attn_bias,
               proj_weight=proj_weight, proj_bias=proj_bias, n_head=n_head)
    want, _ = layers.attention_forward(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head)
    checks.expect_close(f"output for B={B}, T={T}, C={C}, n_head={n_head}", got, want, bar=1e-9)


@exercise("multi_head_attention")
def test_multi_head_attention_keeps_float32(ex):
    rng = np.random.default_rng(11)
    B, T, C, n_head = 2, 5, 8, 2
    arrays = [rng.standard_normal((B, T, C)), rng.standard_normal((C, 3 * C)) / math.sqrt(C),
              rng.standard_normal(3 * C), rng.standard_normal((C, C)) / math.sqrt(C), rng.standard_normal(C)]
    want, _ = layers.attention_forward(*arrays, n_head)
    x, attn_weight, attn_bias, proj_weight, proj_bias = (a.astype(np.float32) for a in arrays)
    got = call(ex, "multi_head_attention", x=x, attn_weight=attn_weight, attn_bias=attn_bias,
               proj_weight=proj_weight, proj_bias=proj_bias, n_head=n_head)
    expect_float32("output for float32 inputs", got)
    checks.expect_close("output for float32 inputs", got, want, bar=1e-5)


@exercise("multi_head_attention")
def test_multi_head_attention_with_large_scores(ex):
    # biases of 40 on the queries and keys put every score near 40 * 40 * sqrt(hs)
    rng = np.random.default_rng(13)
    B, T, C, n_head = 2, 5, 8, 2
    x = rng.standard_normal((B, T, C))
    attn_weight, attn_bias = rng.standard_normal((C, 3 * C)) / math.sqrt(C), rng.standard_normal(3 * C)
    attn_bias[:2 * C] += 40
    proj_weight, proj_bias = rng.standard_normal((C, C)) / math.sqrt(C), rng.standard_normal(C)
    got = call(ex, "multi_head_attention", x=x, attn_weight=attn_weight, attn_bias=attn_bias,
               proj_weight=proj_weight, proj_bias=proj_bias, n_head=n_head)
    want, _ = layers.attention_forward(x, attn_weight, attn_bias, proj_weight, proj_bias, n_head)
    checks.expect_close("output for scores near 3200 (exp(3200) overflows: subtract each row's max before exp)",
                        got, want, bar=1e-9)


# --- 2.6 measuring softmax saturation ---------------------------------------------------------


def _max_attention_weight(d, scaled, n_queries, n_keys, seed):
    """The recipe of exercise 2.6, written again from its docstring; and the largest score."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d))
    k = rng.standard_normal((n_queries, n_keys, d))
    scores = (k @ q[:, :, None])[:, :, 0]  # (n_queries, n_keys)
    if scaled:
        scores = scores / math.sqrt(d)
    return float(reference.softmax_forward(scores).max(axis=1).mean()), float(scores.max())


@exercise("max_attention_weight")
@pytest.mark.parametrize("d, scaled, n_queries, n_keys, seed", [
    (64, True, 500, 16, 3), (64, False, 500, 16, 3), (4, True, 300, 8, 1), (256, False, 200, 10, 2),
    (9, False, 400, 5, 4), (100, True, 300, 32, 5),
    (200_000, False, 4, 8, 8)])  # fmt: skip  (unscaled scores reach 1008: exp overflows without a shift)
def test_max_attention_weight_follows_the_recipe(ex, d, scaled, n_queries, n_keys, seed):
    got = ex.max_attention_weight(d, scaled, n_queries=n_queries, n_keys=n_keys, seed=seed)
    want, largest_score = _max_attention_weight(d, scaled, n_queries, n_keys, seed)
    what = f"max_attention_weight(d={d}, scaled={scaled}, n_queries={n_queries}, n_keys={n_keys}, seed={seed})"
    kind = type(got).__name__ if type(got).__module__ == "builtins" else f"{type(got).__module__}.{type(got).__name__}"
    checks.expect(type(got) is float, f"{what} returned a {kind}, expected a Python float (convert with float())")
    overflow = (f" (a score here reaches {largest_score:.0f} and exp overflows past 709: subtract each row's max "
                f"before exp, as your softmax of 2.1 does)" if largest_score > 709 else "")
    checks.expect(math.isfinite(got), f"{what} = {got!r}, expected {want!r}{overflow}")
    if not abs(got - want) <= 1e-9:
        near = abs(got - want) < 0.02  # within sampling noise: other draws, or the mean over other queries
        raise checks.Wrong(f"{what} = {got!r}, expected {want!r}" + (
            " (close: perhaps other random numbers, or not every query; draw q, then k, from "
            "np.random.default_rng(seed) exactly as the docstring says, and average over all n_queries)"
            if near else ""))

"""The checks a grader makes, each failing with one line a student can act on.

A grader test calls the student's function and then one of these. On failure they raise
`Wrong`, an AssertionError whose message says which output or gradient is wrong, by how
much, and what the bar is; the grade report shows that message as it is.

    checks.expect_shape("attention weights", att, (2, 3, 5, 5))
    checks.expect_close("softmax output", got, want, bar=1e-6)
    checks.expect_gradients(forward, ex.layernorm_backward, (x, w, b), names=("dx", "dw", "db"))
"""

from __future__ import annotations

import copy

import numpy as np

from minigpt.gradcheck import numerical_gradient, rel_error


class Wrong(AssertionError):
    """An answer is wrong; the message (one line) says how."""


def expect(condition, message: str) -> None:
    if not condition:
        raise Wrong(message)


def _describe(x) -> str:
    return f"shape {np.shape(x)}" if isinstance(x, np.ndarray) else f"{type(x).__name__} {x!r:.60}"


def expect_array(what: str, got, shape=None, dtype=None) -> np.ndarray:
    """got is a NumPy array (of `shape` and `dtype` if given) with only finite numbers."""
    if not isinstance(got, np.ndarray):
        raise Wrong(f"{what}: expected a NumPy array, got {_describe(got)}")
    if shape is not None and got.shape != tuple(shape):
        raise Wrong(f"{what}: shape {got.shape}, expected {tuple(shape)}")
    if dtype is not None and got.dtype != np.dtype(dtype):
        raise Wrong(f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}")
    if np.issubdtype(got.dtype, np.number) and not np.all(np.isfinite(got)):
        raise Wrong(f"{what}: holds {np.count_nonzero(~np.isfinite(got))} NaN or infinite value(s)")
    return got


def expect_shape(what: str, got, shape) -> np.ndarray:
    return expect_array(what, got, shape=shape)


def expect_close(what: str, got, want, bar: float = 1e-6) -> None:
    """got equals want to a relative error below bar (gradcheck.rel_error: the largest
    difference over the scale of the whole array)."""
    want = np.asarray(want)
    if np.ndim(want) == 0 and not isinstance(got, np.ndarray):
        got = np.asarray(got, dtype=np.float64)  # a plain number for a scalar answer
    expect_array(what, got, shape=want.shape)
    error = rel_error(got, want)
    if not error < bar:
        worst = np.unravel_index(np.argmax(np.abs(got - want)), want.shape) if want.ndim else ()
        digits = _digits_to_tell_apart(error)
        where = (f" (worst at index {tuple(int(i) for i in worst)}: {got[worst]:.{digits}g}, "
                 f"expected {want[worst]:.{digits}g})")
        raise Wrong(f"{what}: relative error {error:.1e} from the expected values, bar {bar:g}{where}")


def _digits_to_tell_apart(error: float) -> int:
    """Significant digits that show two numbers this far apart as different (6 at least):
    '1.51011, expected 1.51011' tells a student nothing."""
    return int(min(17, max(6, 3 - np.floor(np.log10(max(error, 1e-17))))))


def expect_equal(what: str, got, want) -> None:
    """Exact equality, for integers, lists and token ids."""
    if isinstance(want, np.ndarray):
        expect_array(what, got, shape=want.shape)
        if not np.array_equal(got, want):
            first = tuple(int(i) for i in np.argwhere(got != want)[0])
            raise Wrong(f"{what}: differs at index {first}: {got[first]!r}, expected {want[first]!r}")
        return
    if got != want:
        if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
            if len(got) != len(want):
                raise Wrong(f"{what}: {len(got)} items, expected {len(want)}")
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
            if first is None:  # the same items in another kind of sequence
                raise Wrong(f"{what}: returned a {type(got).__name__}, expected a {type(want).__name__}")
            raise Wrong(f"{what}: item {first} is {got[first]!r}, expected {want[first]!r}")
        raise Wrong(f"{what}: got {got!r:.80}, expected {want!r:.80}")


def expect_gradients(forward, backward, args, names, bar: float = 1e-7, seed: int = 0, h: float = 1e-6):
    """Check a backward pass against central finite differences of a forward, in float64.

    forward(*args) -> (out, cache); backward(dout, cache) -> one gradient per name, in the
    order of `names`, for the arguments at the same positions in args (all float64 arrays).
    The forward is usually the reference (so only the backward is graded); the loss is
    sum(out * dout) for a fixed random dout, whose gradient is what backward returns."""
    args = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in args]
    out, cache = forward(*args)
    dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    # The answer gets copies, so that one that writes into dout or its cache is still
    # compared with the gradient of the loss it was given (and told about dout).
    given_dout = dout.copy()
    grads = backward(given_dout, copy.deepcopy(cache))
    expect(np.array_equal(given_dout, dout),
           "backward changed dout, its upstream gradient, in place: a model passes the same dout on to other "
           "layers (a residual connection gives it to two branches), so a backward must only read it")
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    expect(len(grads) == len(names),
           f"backward returned {len(grads)} value(s), expected {len(names)} ({', '.join(names)})")
    for position, (name, grad) in enumerate(zip(names, grads)):
        # float64 in, float64 out: a gradient computed in float32 is off by ~1e-8, under the
        # bar, so only its dtype shows it
        expect_array(name, grad, shape=np.shape(args[position]), dtype=np.float64)
        numeric = numerical_gradient(lambda: np.sum(forward(*args)[0] * dout), args[position], h)
        error = rel_error(grad, numeric)
        if not error < bar:
            ratio = _typical_ratio(grad, numeric)
            hint = f"; it is about {ratio:.3g} times the true gradient" if ratio is not None else ""
            raise Wrong(f"{name}: relative error {error:.1e} against finite differences, bar {bar:g}{hint}")


def _typical_ratio(got, want):
    """got / want when got is (nearly) a multiple of want: says 'off by a factor of 2'."""
    got, want = np.ravel(got).astype(np.float64), np.ravel(want).astype(np.float64)
    denominator = float(want @ want)
    if denominator == 0.0:
        return None
    ratio = float(got @ want) / denominator
    return ratio if rel_error(got, ratio * want) < 1e-4 and abs(ratio - 1) > 1e-3 else None

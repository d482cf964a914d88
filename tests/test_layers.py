"""Every layer's backward pass against central finite differences in float64, on both
kernel backends, plus the failure modes of the checker itself."""

import numpy as np
import pytest

from minigpt import kernels, layers
from minigpt.gradcheck import check_layer, layer_cases, numerical_gradient, rel_error

CASE_NAMES = [case[0] for case in layer_cases(np.random.default_rng(0))]


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_layer_backward_matches_finite_differences(name, backend):
    case = next(c for c in layer_cases(np.random.default_rng(0)) if c[0] == name)
    _, forward, backward, args, kwargs = case
    with kernels.using(backend):
        errors = check_layer(forward, backward, *args, **kwargs)
    assert errors, "no gradient was checked"
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_layers_without_bias(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6))
    with kernels.using(backend):
        errors = check_layer(layers.linear_forward, layers.linear_backward, x, rng.standard_normal((6, 4)), None)
        assert max(errors.values()) < 1e-7
        # check_layer also fails if backward returns a gradient for the missing bias
        errors = check_layer(layers.layernorm_forward, layers.layernorm_backward, x, rng.standard_normal(6), None)
        assert max(errors.values()) < 1e-7


def test_gradcheck_catches_a_wrong_backward():
    """The checker must fail a backward pass that is subtly wrong (here: GELU's derivative
    without the tanh' term, a classic slip)."""

    def wrong_gelu_backward(dout, x):
        t = np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))
        return (dout * 0.5 * (1 + t),)

    x = np.random.default_rng(2).standard_normal((4, 5))
    errors = check_layer(layers.gelu_forward, wrong_gelu_backward, x)
    assert errors["arg0"] > 1e-3


def test_check_layer_refuses_float32():
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="float64"):
        check_layer(layers.gelu_forward, layers.gelu_backward, x)


def test_numerical_gradient_of_known_function():
    x = np.array([0.5, -1.0, 2.0])
    grad = numerical_gradient(lambda: np.sum(x**3), x)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(x, [0.5, -1.0, 2.0])  # restored after nudging


def test_rel_error():
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([0.0], [0.0]) == 0.0
    assert rel_error([1.0, 0.0], [1.1, 0.0]) == pytest.approx(0.1 / 2.1)
    with pytest.raises(ValueError, match="shapes"):
        rel_error(np.ones(2), np.ones(3))


def test_dropout_mask_statistics():
    rng = np.random.default_rng(0)
    mask = layers.dropout_mask((200, 500), 0.25, rng, np.dtype(np.float32))
    assert mask.dtype == np.float32
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
    assert abs((mask == 0).mean() - 0.25) < 0.01
    assert abs(mask.mean() - 1.0) < 0.02  # inverted dropout keeps the expectation
    assert layers.dropout_mask((3,), 0.0, rng, np.dtype(np.float32)) is None


def test_cross_entropy_ignores_targets_and_averages_over_the_rest():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 3, 5))
    targets = np.array([[1, -100, 4], [0, 2, -100]])
    loss, cache = layers.cross_entropy_forward(logits, targets)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean([log_probs[0, 0, 1], log_probs[0, 2, 4], log_probs[1, 0, 0], log_probs[1, 1, 2]])
    assert loss == pytest.approx(expected, rel=1e-12)
    (dlogits,) = layers.cross_entropy_backward(1.0, cache)
    assert np.all(dlogits[0, 1] == 0) and np.all(dlogits[1, 2] == 0)


# --- the gradcheck command ---------------------------------------------------------------


def test_gradcheck_command_exits_0_when_every_check_passes(capsys):
    from minigpt.__main__ import main

    assert main(["gradcheck", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    # every layer, then the whole model, the model with LoRA adapters and the classifier
    assert out.count(" ok (< ") == len(CASE_NAMES) + 3 and "FAIL" not in out


@pytest.mark.parametrize("broken", ["a layer", "the whole model"])
def test_gradcheck_command_exits_1_when_a_check_fails(broken, monkeypatch, capsys):
    import argparse

    from minigpt import gradcheck

    real_cases = gradcheck.layer_cases

    def one_percent_off(backward):
        return lambda dout, cache: tuple(None if g is None else 1.01 * g for g in backward(dout, cache))

    def cases_with_a_broken_linear(rng):
        return [(name, forward, one_percent_off(backward) if name == "linear" else backward, args, kwargs)
                for name, forward, backward, args, kwargs in real_cases(rng)]

    if broken == "a layer":
        monkeypatch.setattr(gradcheck, "layer_cases", cases_with_a_broken_linear)
        monkeypatch.setattr(gradcheck, "check_model", lambda *args: {"wte.weight": 1e-9})  # passes, quickly
    else:  # the whole model, with and without LoRA adapters
        monkeypatch.setattr(gradcheck, "check_model", lambda *args: {"wte.weight": 1e-9, "h.0.ln_1.weight": 2e-3})
    monkeypatch.setattr(gradcheck, "check_classifier", lambda *args: {"score.weight": 1e-9})
    assert gradcheck.run(argparse.Namespace(backend="numpy")) == 1
    failed = [line.split()[:3] for line in capsys.readouterr().out.splitlines() if "FAIL" in line]
    assert failed == ([["linear"] + failed[0][1:]] if broken == "a layer"
                      else [["whole", "model", "(2"], ["whole", "model", "+"]])

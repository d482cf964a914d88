"""The GPT body on its own (forward_hidden / backward_hidden): the language model is that
body plus its tied head, and a backward through the last k blocks fills exactly their
gradients (and those of ln_f), equal to the full backward's."""

import numpy as np
import pytest

from minigpt import GPT, GPTConfig


def tiny(dtype=np.float64, n_layer=3, dropout=0.0):
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=n_layer, n_head=2, n_embd=8, dropout=dropout)
    model = GPT(config, seed=1, dtype=dtype)
    model.flat_params += np.random.default_rng(2).normal(0, 0.1, model.flat_params.shape).astype(dtype)
    return model


def batch(seed=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 13, (2, 6)), rng.integers(0, 13, (2, 6))


def test_language_model_is_the_body_then_the_tied_head():
    model = tiny()
    idx, _ = batch()
    logits, _ = model.forward(idx)
    h = model.forward_hidden(idx)  # (B, T, C)
    assert h.shape == (2, 6, 8)
    np.testing.assert_array_equal(logits, h @ model.params["wte.weight"].T)


def test_backward_hidden_of_the_lm_head_gradient_equals_backward():
    """backward() = the head's gradient, then backward_hidden: doing the two by hand gives
    the same gradients (bit for bit: the same operations in the same order)."""
    model = tiny()
    idx, targets = batch()
    model.zero_grad()
    model.forward(idx, targets)
    model.backward()
    expected = model.flat_grads.copy()

    model.zero_grad()
    h = model.forward_hidden(idx)
    logits = h @ model.params["wte.weight"].T
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    dlogits = probs.copy()
    np.put_along_axis(dlogits, targets[..., None], np.take_along_axis(probs, targets[..., None], -1) - 1, -1)
    dlogits /= targets.size
    model.grads["wte.weight"] += (h.reshape(-1, 8).T @ dlogits.reshape(-1, 13)).T
    model.backward_hidden(dlogits @ model.params["wte.weight"])
    np.testing.assert_allclose(model.flat_grads, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_backward_through_the_last_k_blocks_fills_exactly_their_gradients(k):
    model = tiny(n_layer=3)
    idx, _ = batch()
    dh = np.random.default_rng(4).standard_normal((2, 6, 8))
    model.zero_grad()
    model.forward_hidden(idx)
    model.backward_hidden(dh)  # everything
    full = model.flat_grads.copy()

    model.zero_grad()
    model.forward_hidden(idx)
    model.backward_hidden(dh, n_blocks=k)
    part = model.block_params_slice(3 - k)
    np.testing.assert_array_equal(model.flat_grads[part], full[part])  # the same, where it goes
    assert not model.flat_grads[: part.start].any()  # and nothing before: frozen, not computed
    assert full[: part.start].any()  # (which the full backward does fill)


def test_block_params_slice_holds_the_last_blocks_and_ln_f():
    model = tiny(n_layer=3)
    part = model.block_params_slice(2)
    inside = {name for name, sl in model.param_slices.items() if sl.start >= part.start}
    assert inside == {name for name in model.params if name.startswith(("h.2.", "ln_f."))}
    assert part.stop == model.flat_params.size
    assert model.block_params_slice(0).start == model.param_slices["h.0.ln_1.weight"].start
    assert model.block_params_slice(3).start == model.param_slices["ln_f.weight"].start
    with pytest.raises(ValueError, match="first_block"):
        model.block_params_slice(4)


def test_body_errors_are_clear():
    model = tiny()
    idx, _ = batch()
    with pytest.raises(ValueError, match="forward_hidden"):
        model.backward_hidden(np.zeros((2, 6, 8)))
    model.forward_hidden(idx)
    with pytest.raises(ValueError, match="forward"):  # no LM head was run, so no LM backward
        model.backward()
    with pytest.raises(ValueError, match="n_blocks"):
        model.backward_hidden(np.zeros((2, 6, 8)), n_blocks=4)
    with pytest.raises(ValueError, match="shape"):
        model.backward_hidden(np.zeros((2, 5, 8)))
    model.backward_hidden(np.zeros((2, 6, 8)))
    with pytest.raises(ValueError, match="forward"):  # one backward per forward
        model.backward_hidden(np.zeros((2, 6, 8)))


def test_attention_weights_still_readable_after_a_body_forward():
    model = tiny()
    idx, _ = batch()
    model.forward_hidden(idx)
    weights = model.attention_weights()
    assert len(weights) == 3 and weights[0].shape == (2, 2, 6, 6)
    np.testing.assert_allclose(weights[0].sum(-1), 1.0)

"""Answering an instruction: the response stops at the model's end-of-text or at the limit,
and is the greedy continuation model.forward gives; the language-model loss through the body
gives model.backward's gradients."""

import numpy as np
import pytest

from minigpt.finetune.instruct_generate import END_OF_TEXT, LENGTH_LIMIT, respond
from minigpt.finetune.instruct_train import lm_backward, lm_loss
from minigpt.generate import generate
from minigpt.model import GPT, GPTConfig


def tiny_model(block_size=16, seed=0, dtype=np.float32, dropout=0.0):
    config = GPTConfig(vocab_size=40, block_size=block_size, n_layer=2, n_head=2, n_embd=16, dropout=dropout)
    return GPT(config, seed=seed, dtype=dtype).eval()


def greedy_by_full_forward(model, prompt, n):
    """n greedy tokens, each from a full model.forward of everything so far (no cache)."""
    seq = list(prompt)
    for _ in range(n):
        logits, _ = model.forward(np.array([seq[-model.config.block_size:]]))
        seq.append(int(logits[0, -1].argmax()))
    return seq[len(prompt):]


def test_a_response_stops_at_the_first_end_of_text_which_it_does_not_include():
    model = tiny_model()
    prompt = [3, 1, 4, 1, 5]
    greedy = greedy_by_full_forward(model, prompt, 8)
    k = next(i for i in range(1, 8) if greedy[i] not in greedy[:i])  # a token first written at step k
    ids, stopped = respond(model, prompt, eot_id=greedy[k], max_new_tokens=8)
    assert stopped == END_OF_TEXT and ids == greedy[:k]


def test_without_end_of_text_a_response_stops_at_the_limit_and_says_so():
    model = tiny_model()
    prompt = [3, 1, 4, 1, 5]
    greedy = greedy_by_full_forward(model, prompt, 6)
    eot = next(t for t in range(40) if t not in greedy)
    ids, stopped = respond(model, prompt, eot_id=eot, max_new_tokens=6)
    assert stopped == LENGTH_LIMIT and ids == greedy


def test_past_the_context_the_window_slides_as_generate_does():
    model = tiny_model(block_size=8)
    prompt = [3, 1, 4, 1, 5, 9]
    expected = generate(model, np.array([prompt]), 12, temperature=0.0)[0, len(prompt):].tolist()
    eot = next(t for t in range(40) if t not in expected)
    ids, stopped = respond(model, prompt, eot_id=eot, max_new_tokens=12)
    assert ids == expected == greedy_by_full_forward(model, prompt, 12) and stopped == LENGTH_LIMIT
    long_prompt = list(range(10)) + prompt  # longer than the context: read through its last 8 ids
    assert respond(model, long_prompt, eot, 5)[0] == greedy_by_full_forward(model, long_prompt, 5)


def test_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        respond(model, [1, 2], 0, max_new_tokens=0)
    with pytest.raises(ValueError, match="the prompt is empty"):
        respond(model, [], 0, max_new_tokens=3)


@pytest.mark.parametrize("n_blocks", [None, 1, 2])
def test_the_loss_through_the_body_matches_model_forward_and_its_gradients(n_blocks):
    model = tiny_model(dtype=np.float64, dropout=0.1).train()
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 40, (3, 10))
    targets = rng.integers(0, 40, (3, 10))
    targets[0, 6:] = -100  # padding
    targets[1, :4] = -100  # a masked prompt
    model.zero_grad()
    model.rng = np.random.default_rng(5)
    _, expected_loss = model.forward(inputs, targets)
    model.backward()
    expected = model.flat_grads.copy()
    model.zero_grad()
    model.rng = np.random.default_rng(5)  # the same dropout masks
    loss, cache = lm_loss(model, inputs, targets)
    lm_backward(model, cache, n_blocks)
    assert loss == pytest.approx(float(expected_loss), rel=1e-12)
    tail = slice(None) if n_blocks is None else model.block_params_slice(model.config.n_layer - n_blocks)
    np.testing.assert_allclose(model.flat_grads[tail], expected[tail], rtol=1e-10, atol=1e-12)
    if n_blocks is not None:
        assert not model.flat_grads[: tail.start].any()  # the frozen front gets nothing

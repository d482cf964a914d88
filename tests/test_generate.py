"""Generation: the KV cache reproduces the full forward pass, and the sampling rules
(temperature, top-k, top-p) pick what they promise."""

from __future__ import annotations

import numpy as np
import pytest

import minigpt.generate
from minigpt import GPT, GPTConfig, kernels
from minigpt.generate import (
    KVCache,
    forward_with_cache,
    generate,
    sample_next,
    sampling_probs,
    top_k_mask,
    top_p_mask,
    validate_sampling,
)

V = 13


def tiny_model(block_size=8, seed=0, dtype=np.float64, bias=True):
    """A random tiny GPT whose weights are large enough that its predictions vary with the
    context (GPT-2's 0.02 init makes an untrained model say the same token everywhere,
    which would let a broken cache pass a greedy comparison)."""
    config = GPTConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=2, n_embd=8, bias=bias)
    model = GPT(config, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    model.flat_params[:] = rng.normal(0.0, 0.5, model.flat_params.shape)
    return model.eval()


# --- the KV cache -----------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_cache_logits_equal_full_forward_prompt_then_single_steps(bias):
    model = tiny_model(block_size=10, bias=bias)
    rng = np.random.default_rng(1)
    seq = rng.integers(0, V, size=(3, 4))  # a prompt of 4 tokens, batch of 3
    cache = KVCache.for_model(model, batch_size=3)

    logits = forward_with_cache(model, seq, cache)
    full, _ = model.forward(seq)
    np.testing.assert_allclose(logits, full, rtol=1e-12, atol=1e-12)
    assert cache.length == 4

    for step in range(6):  # fill the cache up to block_size exactly
        new = rng.integers(0, V, size=(3, 1))
        seq = np.concatenate([seq, new], axis=1)
        logits = forward_with_cache(model, new, cache)  # (3, 1, V)
        full, _ = model.forward(seq)
        assert logits.shape == (3, 1, V)
        np.testing.assert_allclose(logits[:, 0], full[:, -1], rtol=1e-12, atol=1e-12)
    assert cache.length == 10


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_cache_logits_equal_full_forward_in_float32(backend):
    """float32, the dtype sampling runs in: the two paths round differently, so they agree
    to float32's precision (here within 1e-5), not bit for bit."""
    model = tiny_model(block_size=10, dtype=np.float32)
    seq = np.random.default_rng(13).integers(0, V, size=(2, 10))
    with kernels.using(backend):
        cache = KVCache.for_model(model, batch_size=2)
        stepwise = [forward_with_cache(model, seq[:, :4], cache)]  # a prompt, then one token at a time
        stepwise += [forward_with_cache(model, seq[:, t:t + 1], cache) for t in range(4, 10)]
        full, _ = model.forward(seq)
    logits = np.concatenate(stepwise, axis=1)  # (2, 10, V)
    assert logits.dtype == full.dtype == np.float32
    assert np.abs(full).max() > 1.0  # logits large enough for float32 rounding to show
    np.testing.assert_allclose(logits, full, rtol=1e-5, atol=1e-5)


def test_cache_accepts_several_new_tokens_at_once():
    model = tiny_model()
    seq = np.random.default_rng(2).integers(0, V, size=(1, 7))
    cache = KVCache.for_model(model, 1)
    forward_with_cache(model, seq[:, :3], cache)
    logits = forward_with_cache(model, seq[:, 3:], cache)  # 4 positions in one call
    full, _ = model.forward(seq)
    np.testing.assert_allclose(logits, full[:, 3:], rtol=1e-12, atol=1e-12)


def test_cache_refuses_to_overflow_block_size():
    model = tiny_model(block_size=4)
    cache = KVCache.for_model(model, 1)
    forward_with_cache(model, np.zeros((1, 3), dtype=np.int64), cache)
    with pytest.raises(ValueError, match="block_size"):
        forward_with_cache(model, np.zeros((1, 2), dtype=np.int64), cache)


def test_cache_dtype_follows_model():
    assert KVCache.for_model(tiny_model(dtype=np.float32), 2).keys.dtype == np.float32
    assert KVCache.for_model(tiny_model(dtype=np.float64), 2).keys.dtype == np.float64


def test_generation_with_cache_conditions_on_the_same_window_past_block_size():
    """Past block_size the context is cropped to the last block_size tokens. Check each
    step's distribution against a full forward on exactly that window: sample with
    temperature 1 using a recorded uniform draw, and confirm both loops agree token by
    token over a long run (4 x block_size)."""
    model = tiny_model(block_size=6)
    prompt = np.random.default_rng(3).integers(0, V, size=(2, 3))
    with_cache = generate(model, prompt, 24, temperature=1.0, rng=7, use_cache=True)
    without = generate(model, prompt, 24, temperature=1.0, rng=7, use_cache=False)
    np.testing.assert_array_equal(with_cache, without)
    # And the no-cache loop really used the cropped window: recompute the greedy choice
    # at every step from the last 6 tokens.
    greedy = generate(model, prompt, 24, temperature=0.0, use_cache=True)
    for t in range(3, greedy.shape[1]):
        window = greedy[:, max(0, t - 6):t]
        logits, _ = model.forward(window)
        np.testing.assert_array_equal(greedy[:, t], logits[:, -1].argmax(axis=-1))


def test_generate_feeds_only_the_new_token_while_the_window_fits(monkeypatch):
    """The outputs alone cannot tell incremental decoding from rebuilding the cache every
    step, so watch the calls. Prompt of 3 tokens, block_size 6, 6 new tokens (steps
    t = 3..8 predict token t from tokens 0..t-1):
      t=3: empty cache, the 3 prompt tokens go in at once       -> T_new 3, cache 0 -> 3
      t=4, 5, 6: one unseen token each, the cache grows to 6    -> T_new 1, 1, 1
      t=7, 8: 6 + 1 > block_size: reset, and rebuild from the last 6 tokens (the absolute
              position embeddings of the cached keys no longer fit the slid window)
                                                                -> T_new 6, 6 from length 0
    The token sampled at the last step is never fed."""
    real = minigpt.generate.forward_with_cache
    calls = []  # (cache.length before the call, idx_new.shape[1])

    def spy(model, idx_new, cache, params=None):
        calls.append((cache.length, idx_new.shape[1]))
        return real(model, idx_new, cache, params)

    monkeypatch.setattr(minigpt.generate, "forward_with_cache", spy)
    prompt = np.random.default_rng(11).integers(0, V, size=(2, 3))
    out = generate(tiny_model(block_size=6), prompt, 6, rng=0)
    assert out.shape == (2, 9)
    assert [n for _, n in calls] == [3, 1, 1, 1, 6, 6]
    assert [length for length, _ in calls] == [0, 3, 4, 5, 0, 0]


def test_greedy_with_cache_equals_without_cache():
    model = tiny_model(block_size=8)
    prompt = np.random.default_rng(4).integers(0, V, size=(3, 2))
    a = generate(model, prompt, 20, temperature=0.0, use_cache=True)
    b = generate(model, prompt, 20, temperature=0.0, use_cache=False)
    assert a.shape == (3, 22)
    np.testing.assert_array_equal(a[:, :2], prompt)
    np.testing.assert_array_equal(a, b)
    # Random nets fall into short greedy loops, so this comparison alone is weak; the
    # sampled comparison past block_size above is the stronger end-to-end check.


def test_prompt_longer_than_block_size_is_cropped():
    model = tiny_model(block_size=5)
    prompt = np.random.default_rng(5).integers(0, V, size=(1, 9))
    out = generate(model, prompt, 3, temperature=0.0)
    np.testing.assert_array_equal(out[:, :9], prompt)
    logits, _ = model.forward(prompt[:, -5:])
    assert out[0, 9] == logits[0, -1].argmax()


def test_on_token_streams_every_new_token_in_order():
    model = tiny_model()
    seen = []
    out = generate(model, np.array([[1, 2]]), 5, rng=0, on_token=lambda ids: seen.append(ids.copy()))
    np.testing.assert_array_equal(np.concatenate(seen), out[0, 2:])


def test_generate_turns_dropout_off_and_restores_the_mode_after_an_error():
    config = GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.5)
    model = GPT(config, seed=0, dtype=np.float64).train()
    prompt = np.array([[1, 2]])
    a = generate(model, prompt, 5, temperature=0, use_cache=False)
    b = generate(model, prompt, 5, temperature=0, use_cache=False)
    np.testing.assert_array_equal(a, b)  # greedy through model.forward: no dropout masks drawn
    assert model.training

    def stop(ids):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        generate(model, prompt, 5, on_token=stop)
    assert model.training  # restored even though generation failed half-way


def test_generate_restores_training_mode():
    model = tiny_model().train()
    generate(model, np.array([[1]]), 2, rng=0)
    assert model.training


# --- sampling rules -------------------------------------------------------------------


def test_temperature_zero_is_argmax():
    logits = np.random.default_rng(6).normal(size=(5, V))
    np.testing.assert_array_equal(sample_next(logits, temperature=0.0), logits.argmax(axis=-1))


def test_top_k_one_equals_greedy():
    model = tiny_model()
    prompt = np.random.default_rng(7).integers(0, V, size=(2, 3))
    greedy = generate(model, prompt, 15, temperature=0.0)
    for seed in range(3):
        top1 = generate(model, prompt, 15, temperature=1.0, top_k=1, rng=seed)
        np.testing.assert_array_equal(top1, greedy)


def test_top_k_keeps_exactly_the_k_largest():
    logits = np.array([[0.5, 3.0, -1.0, 2.0, 2.5]])
    np.testing.assert_array_equal(top_k_mask(logits, 2), [[False, True, False, False, True]])
    probs = sampling_probs(logits, temperature=1.0, top_k=3)
    kept = probs[0] > 0
    np.testing.assert_array_equal(kept, [False, True, False, True, True])
    e = np.exp([3.0, 2.0, 2.5])
    np.testing.assert_allclose(probs[0, [1, 3, 4]], e / e.sum())


def test_top_k_at_or_above_the_vocabulary_size_keeps_every_token():
    logits = np.random.default_rng(14).normal(size=(3, V))
    unfiltered = sampling_probs(logits, temperature=0.8)
    for k in (V, V + 1, 10 * V):
        assert top_k_mask(logits, k).all()
        np.testing.assert_array_equal(sampling_probs(logits, temperature=0.8, top_k=k), unfiltered)
    model, prompt = tiny_model(), np.array([[1, 2]])
    np.testing.assert_array_equal(generate(model, prompt, 8, top_k=V + 5, rng=3), generate(model, prompt, 8, rng=3))


@pytest.mark.parametrize(
    "probs, p, expected",
    [
        ([0.5, 0.2, 0.3], 0.5, [1, 0, 0]),  # the top token alone reaches p
        ([0.5, 0.2, 0.3], 0.51, [1, 0, 1]),  # just over it needs the second
        ([0.5, 0.2, 0.3], 0.8, [1, 0, 1]),  # exactly 0.8 with two tokens
        ([0.5, 0.2, 0.3], 0.81, [1, 1, 1]),
        ([0.1, 0.6, 0.3], 0.65, [0, 1, 1]),  # order of ids does not matter
        ([0.25, 0.25, 0.25, 0.25], 0.5, [1, 1, 0, 0]),  # ties: smallest set, lower ids first
        ([0.25, 0.25, 0.25, 0.25], 0.6, [1, 1, 1, 0]),
        ([0.4, 0.3, 0.3], 0.5, [1, 1, 0]),  # a tie at the boundary: only one of the two
        ([0.4, 0.3, 0.3], 1.0, [1, 1, 1]),  # p = 1 keeps everything
        ([0.7, 0.3, 0.0], 1.0, [1, 1, 0]),  # ... of nonzero probability
        ([1.0, 0.0, 0.0], 0.3, [1, 0, 0]),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(probs, p, expected):
    mask = top_p_mask(np.array([probs]), p)
    np.testing.assert_array_equal(mask[0], np.array(expected, dtype=bool))


def test_top_p_mask_is_minimal_and_sufficient_on_random_distributions():
    """Property check: the kept mass is >= p, and dropping the least likely kept token
    would fall below p (so no smaller set in probability order suffices)."""
    rng = np.random.default_rng(8)
    for _ in range(200):
        probs = rng.dirichlet(np.full(V, 0.3), size=1)
        p = rng.uniform(0.01, 1.0)
        mask = top_p_mask(probs, p)[0]
        kept = probs[0][mask]
        assert kept.sum() >= p - 1e-9
        assert kept.sum() - kept.min() < p
        assert kept.min() >= probs[0][~mask].max(initial=0.0)  # the most likely ones


def test_top_p_renormalises_and_never_samples_outside_the_nucleus():
    logits = np.log(np.array([[0.5, 0.05, 0.3, 0.15]]))
    probs = sampling_probs(logits, top_p=0.75)
    np.testing.assert_allclose(probs[0], [0.5 / 0.8, 0.0, 0.3 / 0.8, 0.0])
    rng = np.random.default_rng(9)
    draws = np.array([sample_next(logits, top_p=0.75, rng=rng)[0] for _ in range(400)])
    assert set(draws.tolist()) == {0, 2}
    assert 0.5 < np.mean(draws == 0) < 0.75  # about 0.625


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_filtered_tokens_get_exactly_zero_probability_on_every_backend(backend):
    logits = np.random.default_rng(12).normal(size=(4, V))
    with kernels.using(backend):
        probs = sampling_probs(logits, temperature=0.7, top_k=3)
    assert probs.dtype == np.float64
    np.testing.assert_array_equal((probs > 0).sum(axis=-1), 3)
    np.testing.assert_array_equal(probs == 0, ~top_k_mask(logits, 3))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-14)


def test_temperature_sharpens_and_flattens():
    logits = np.array([[2.0, 1.0, 0.0]])
    cold, warm = sampling_probs(logits, temperature=0.5), sampling_probs(logits, temperature=2.0)
    e = np.exp(logits[0] / 0.5)
    np.testing.assert_allclose(cold[0], e / e.sum())
    assert cold[0, 0] > sampling_probs(logits)[0, 0] > warm[0, 0]


def test_samples_follow_the_distribution():
    logits = np.log(np.array([[0.6, 0.3, 0.1]]))
    rng = np.random.default_rng(10)
    draws = np.array([sample_next(np.repeat(logits, 2000, axis=0), rng=rng)]).ravel()
    freq = np.bincount(draws, minlength=3) / draws.size
    np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.03)


def test_same_seed_same_samples_different_seed_different_samples():
    model = tiny_model()
    prompt = np.array([[1, 2, 3]])
    a = generate(model, prompt, 30, temperature=1.0, top_p=0.9, rng=123)
    b = generate(model, prompt, 30, temperature=1.0, top_p=0.9, rng=123)
    c = generate(model, prompt, 30, temperature=1.0, top_p=0.9, rng=124)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": -0.2}, "top_p"),
    ],
)
def test_bad_sampling_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        validate_sampling(**kwargs)
    with pytest.raises(ValueError, match=message):
        generate(tiny_model(), np.array([[1]]), 1, **kwargs)


def test_good_sampling_settings_pass():
    validate_sampling(0.0, 1, 1.0)
    validate_sampling(1.5, 100, 1e-6)


@pytest.mark.parametrize("prompt, n, message", [(np.array([[1, V]]), 1, "token ids"),
                                                 (np.array([[-1]]), 1, "token ids"),
                                                 (np.zeros((1, 0), dtype=np.int64), 1, "non-empty"),
                                                 (np.zeros((0, 3), dtype=np.int64), 1, "non-empty"),
                                                 (np.array([[1.0, 2.0]]), 1, "integer"),
                                                 (np.array([1, 2]), 1, r"\(B, T\)"),
                                                 (np.array([[1]]), -1, "max_new_tokens")])
def test_bad_generate_inputs(prompt, n, message):
    with pytest.raises(ValueError, match=message):
        generate(tiny_model(), prompt, n)

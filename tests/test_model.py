"""The whole GPT: gradients, accumulation, the flat buffer, tied weights, and bad input."""

import math

import numpy as np
import pytest

from minigpt import GPT, GPTConfig, kernels
from minigpt.gradcheck import check_model, tiny_model_case
from minigpt.model import count_params, flops_per_token, parameter_shapes


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_whole_model_gradient_matches_finite_differences(backend):
    """2 layers, 2 heads, n_embd 12, vocab 11, T 5, dropout on with fixed masks, some
    targets -100, tied head: every parameter's gradient within 1e-6."""
    model, idx, targets = tiny_model_case()
    assert model.config.dropout > 0 and (targets == -100).any()
    with kernels.using(backend):
        errors = check_model(model, idx, targets)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < 1e-6, sorted(errors.items(), key=lambda kv: -kv[1])[:3]


def test_dropout_is_active_in_training_and_off_in_eval():
    model, idx, targets = tiny_model_case()
    losses = {model.forward(idx, targets)[1] for _ in range(3)}
    assert len(losses) == 3  # a fresh mask every forward
    model.eval()
    assert len({model.forward(idx, targets)[1] for _ in range(3)}) == 1


def test_bias_free_model_trains_its_gradients():
    config = GPTConfig(vocab_size=11, block_size=6, n_layer=1, n_head=2, n_embd=8, bias=False)
    model = GPT(config, seed=0, dtype=np.float64)
    assert not any(name.endswith(".bias") for name in model.params)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 11, (2, 6)), rng.integers(0, 11, (2, 6))
    errors = check_model(model, idx, targets)
    assert max(errors.values()) < 1e-6


def test_gradient_accumulation_over_half_batches_equals_full_batch():
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = GPT(config, seed=1, dtype=np.float64)
    rng = np.random.default_rng(1)
    idx, targets = rng.integers(0, 13, (4, 8)), rng.integers(0, 13, (4, 8))
    model.forward(idx, targets)
    model.backward()
    full = model.flat_grads.copy()
    model.zero_grad()
    for half in (slice(0, 2), slice(2, 4)):
        model.forward(idx[half], targets[half])
        model.backward(0.5)  # each half's mean loss counts for half of the full mean
    np.testing.assert_allclose(model.flat_grads, full, rtol=1e-10, atol=1e-14)
    assert np.abs(full).max() > 0


def test_backward_accumulates_with_plus_equals():
    config = GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4)
    model = GPT(config, seed=0, dtype=np.float64)
    idx = np.array([[1, 2, 3, 4]])
    model.forward(idx, idx)
    model.backward()
    once = model.flat_grads.copy()
    model.forward(idx, idx)
    model.backward()
    np.testing.assert_allclose(model.flat_grads, 2 * once, rtol=1e-12)


def test_parameters_are_views_of_one_flat_buffer_with_hf_names():
    config = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8)
    model = GPT(config)
    C = 8
    expected = {
        "wte.weight": (50, C), "wpe.weight": (16, C), "ln_f.weight": (C,), "ln_f.bias": (C,),
        "h.1.ln_1.weight": (C,), "h.1.attn.c_attn.weight": (C, 3 * C), "h.1.attn.c_attn.bias": (3 * C,),
        "h.1.attn.c_proj.weight": (C, C), "h.1.mlp.c_fc.weight": (C, 4 * C),
        "h.1.mlp.c_proj.weight": (4 * C, C), "h.1.mlp.c_proj.bias": (C,),
    }  # fmt: skip
    for name, shape in expected.items():
        assert model.params[name].shape == shape
        assert np.shares_memory(model.params[name], model.flat_params)
        assert np.shares_memory(model.grads[name], model.flat_grads)
    assert not any("lm_head" in name for name in model.params)
    assert sum(p.size for p in model.params.values()) == model.num_params() == model.flat_params.size
    model.flat_params[model.param_slices["wte.weight"]] = 0.5  # writing the buffer writes the view
    assert np.all(model.params["wte.weight"] == 0.5)


def test_head_is_tied_to_token_embedding():
    config = GPTConfig(vocab_size=9, block_size=4, n_layer=1, n_head=1, n_embd=4)
    model = GPT(config, dtype=np.float64).eval()
    idx = np.array([[0, 1, 2]])
    before, _ = model.forward(idx)
    model.params["wte.weight"][5] += 1.0  # token 5 is not in the input: only the head sees it
    after, _ = model.forward(idx)
    changed = np.abs(after - before).max(axis=(0, 1)) > 0
    assert changed[5] and changed.sum() == 1


def test_gpt2_initialisation():
    config = GPTConfig(vocab_size=500, block_size=64, n_layer=4, n_head=4, n_embd=64, init_std=0.02)
    model = GPT(config, seed=0)
    p = model.params
    assert abs(p["wte.weight"].std() - 0.02) < 0.001
    assert abs(p["h.0.mlp.c_proj.weight"].std() - 0.02 / np.sqrt(8)) < 0.0005
    assert np.all(p["h.0.ln_1.weight"] == 1) and np.all(p["h.0.attn.c_attn.bias"] == 0)
    assert not np.array_equal(GPT(config, seed=1).flat_params, model.flat_params)
    np.testing.assert_array_equal(GPT(config, seed=0).flat_params, model.flat_params)


def test_default_initialisation_scales_with_width():
    """Without init_std, weights start at std 1/sqrt(n_embd), so a weight matrix reading a
    layernorm's unit-variance output gives unit-variance outputs at any width."""
    for n_embd in (64, 256):
        model = GPT(GPTConfig(vocab_size=500, block_size=64, n_layer=2, n_head=4, n_embd=n_embd), seed=0)
        std = 1 / np.sqrt(n_embd)
        assert abs(model.params["h.0.attn.c_attn.weight"].std() / std - 1) < 0.02
        assert abs(model.params["h.1.attn.c_proj.weight"].std() / (std / 2) - 1) < 0.05  # / sqrt(2 n_layer)
        x = np.random.default_rng(1).normal(size=(4096, n_embd))  # like a layernorm output
        assert abs((x @ model.params["h.0.mlp.c_fc.weight"]).std() - 1) < 0.05


def test_dtype_is_kept_throughout():
    config = GPTConfig(vocab_size=9, block_size=4, n_layer=1, n_head=1, n_embd=4)
    for dtype in (np.float32, np.float64):
        model = GPT(config, dtype=dtype)
        logits, loss = model.forward(np.array([[1, 2]]), np.array([[2, 3]]))
        model.backward()
        assert logits.dtype == dtype and np.asarray(loss).dtype == dtype and model.flat_grads.dtype == dtype


def test_initial_loss_is_near_log_vocab():
    """An untrained model should guess about uniformly: loss ~ log V. With GPT-2's small
    init the logits are ~0; with the default 1/sqrt(n_embd) the tied head gives logits of
    std ~1, which costs about var/2 = 0.5 nats more (0.37 to 0.60 over seeds 0-2), no more."""
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 65, (4, 32)), rng.integers(0, 65, (4, 32))
    for init_std, low, high in ((0.02, -0.1, 0.1), (None, 0.2, 0.8)):
        config = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32, init_std=init_std)
        _, loss = GPT(config, seed=0).forward(idx, targets)
        assert low < loss - np.log(65) < high, (init_std, loss)


def test_flops_per_token_estimate():
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = GPT(config)
    n = model.num_params() - 64 * 128
    assert model.flops_per_token() == 6 * n + 12 * 4 * 128 * 64


def test_count_params_needs_no_model_and_equals_the_allocated_buffer():
    for bias in (True, False):
        config = GPTConfig(vocab_size=37, block_size=11, n_layer=3, n_head=2, n_embd=10, bias=bias)
        model = GPT(config)
        assert count_params(config) == model.num_params() == model.flat_params.size
        assert flops_per_token(config, 7) == model.flops_per_token(7)
        assert flops_per_token(config) == model.flops_per_token() == flops_per_token(config, 11)


# OpenAI's GPT-2 small checkpoint (Hugging Face "gpt2", model.safetensors): its tensors and
# their shapes as stored, written out by hand here, not derived from minigpt's code.
GPT2_SMALL_CHECKPOINT = {
    "wte.weight": (50257, 768), "wpe.weight": (1024, 768), "ln_f.weight": (768,), "ln_f.bias": (768,),
    **{f"h.{i}.{name}": shape for i in range(12) for name, shape in {
        "ln_1.weight": (768,), "ln_1.bias": (768,), "attn.c_attn.weight": (768, 2304), "attn.c_attn.bias": (2304,),
        "attn.c_proj.weight": (768, 768), "attn.c_proj.bias": (768,), "ln_2.weight": (768,), "ln_2.bias": (768,),
        "mlp.c_fc.weight": (768, 3072), "mlp.c_fc.bias": (3072,), "mlp.c_proj.weight": (3072, 768),
        "mlp.c_proj.bias": (768,)}.items()},
}  # fmt: skip


def test_gpt2_and_gpt3_counts_equal_the_published_ones():
    checkpoint_total = sum(math.prod(shape) for shape in GPT2_SMALL_CHECKPOINT.values())
    assert checkpoint_total == 124_439_808
    gpt2 = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    assert parameter_shapes(gpt2) == GPT2_SMALL_CHECKPOINT
    assert count_params(gpt2) == checkpoint_total
    # transformers' num_parameters() of the released gpt2-medium, -large and -xl checkpoints
    for n_layer, n_head, n_embd, published in ((24, 16, 1024, 354_823_168), (36, 20, 1280, 774_030_080),
                                               (48, 25, 1600, 1_557_611_200)):
        config = GPTConfig(vocab_size=50257, block_size=1024, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
        assert count_params(config) == published
    # GPT-3 175B (Brown et al. 2020): Table D.1 gives 174,600M parameters and 3.14e23 training
    # FLOPs for 300B tokens, i.e. 6 N per token (the attention term, 2.8% here, left out)
    gpt3 = GPTConfig(vocab_size=50257, block_size=2048, n_layer=96, n_head=96, n_embd=12288)
    n = count_params(gpt3)
    assert round(n / 1e8) == 1746
    paper_flops_per_token = 3.14e23 / 300e9
    assert abs(6 * n / paper_flops_per_token - 1) < 0.005
    assert 0.02 < flops_per_token(gpt3) / paper_flops_per_token - 1 < 0.04


# --- bad input ---------------------------------------------------------------------------

SMALL = dict(vocab_size=10, block_size=4, n_layer=1, n_head=2, n_embd=8)


@pytest.mark.parametrize(
    "change, message",
    [({"n_embd": 10, "n_head": 3}, "divisible by n_head"), ({"n_layer": 0}, "n_layer"),
     ({"dropout": 1.0}, "dropout"), ({"vocab_size": 2.5}, "vocab_size"), ({"init_std": 0.0}, "init_std"),
     ({"init_std": -0.02}, "init_std")],
)  # fmt: skip
def test_bad_config_is_a_clear_error(change, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**SMALL, **change})


@pytest.mark.parametrize(
    "idx, targets, message",
    [
        (np.zeros((1, 5), dtype=int), None, "exceeds block_size"),
        (np.array([[1, 10]]), None, r"\[0, 10\)"),
        (np.array([[-1, 2]]), None, r"\[0, 10\)"),
        (np.array([[1.0, 2.0]]), None, "integer"),
        (np.array([1, 2]), None, r"shape \(B, T\)"),
        (np.array([[1, 2]]), np.array([[1, 2, 3]]), "targets shape"),
        (np.array([[1, 2]]), np.array([[1, 12]]), "targets must be in"),
        (np.array([[1, 2]]), np.array([[1.0, 2.0]]), "targets must hold integer"),
    ],
)
def test_bad_input_is_a_clear_error(idx, targets, message):
    model = GPT(GPTConfig(**SMALL))
    with pytest.raises(ValueError, match=message):
        model.forward(idx, targets)


def test_backward_before_forward_and_twice_are_clear_errors():
    model = GPT(GPTConfig(**SMALL))
    with pytest.raises(ValueError, match="forward"):
        model.backward()
    model.forward(np.array([[1, 2]]))
    with pytest.raises(ValueError, match="targets"):
        model.backward()
    model.forward(np.array([[1, 2]]), np.array([[2, 3]]))
    model.backward()
    with pytest.raises(ValueError, match="forward"):
        model.backward()


def test_load_params_checks_names_and_shapes():
    model = GPT(GPTConfig(**SMALL))
    other = GPT(GPTConfig(**SMALL), seed=5)
    model.load_params(other.params)
    np.testing.assert_array_equal(model.flat_params, other.flat_params)
    bad = dict(other.params)
    bad["wte.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="wte.weight"):
        model.load_params(bad)
    del bad["wte.weight"]
    with pytest.raises(ValueError, match="missing"):
        model.load_params(bad)

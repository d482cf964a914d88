"""LoRA adapters (minigpt/finetune/lora.py, layers.lora_*): the three oracles, merge, the
KV-cache path, save/load on their own, frozen base weights, and the clear errors."""

import numpy as np
import pytest

from minigpt import GPT, GPTConfig, kernels
from minigpt.finetune import lora as lora_module
from minigpt.finetune.lora import add_lora, load_adapters, merge, resolve_targets, save_adapters
from minigpt.finetune.store import StoreError
from minigpt.generate import KVCache, forward_with_cache
from minigpt.gradcheck import check_model, tiny_lora_model_case
from minigpt.optim import AdamW, ParamGroup, clip_grad_norm
from minigpt.train_setup import PRESETS

CONFIG = GPTConfig(vocab_size=17, block_size=12, n_layer=2, n_head=2, n_embd=12)


def adapted(dtype=np.float64, targets=lora_module.DEFAULT_TARGETS, rank=3, seed=0):
    """A model with adapters whose B is random, so that they change the outputs."""
    model = GPT(CONFIG, seed=seed, dtype=dtype)
    lora = add_lora(model, rank=rank, alpha=5.0, targets=targets, seed=seed)
    lora.flat_params[...] = np.random.default_rng(seed + 1).normal(0, 0.2, lora.flat_params.shape)
    return model


def batch(seed=0, T=9):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 17, (3, T))
    targets[0, :3] = -100
    return rng.integers(0, 17, (3, T)), targets


# --- oracle 1: finite differences --------------------------------------------------------


@pytest.mark.parametrize("backend", kernels.BACKENDS)  # oracle 3: the NumPy path and Numba agree
def test_adapter_gradients_match_finite_differences(backend):
    model, idx, targets = tiny_lora_model_case()  # dropout on, some targets ignored
    with kernels.using(backend):
        errors = check_model(model, idx, targets)
    adapter_errors = {name: e for name, e in errors.items() if ".lora_" in name}
    assert len(adapter_errors) == 2 * 4 * 2  # A and B, 4 layers, 2 blocks
    assert max(adapter_errors.values()) < 1e-7, adapter_errors
    assert max(errors.values()) < 1e-6  # and the base weights' gradients stay right


# --- oracle 2: PyTorch autograd, adapters in activation space -----------------------------


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_logits_and_adapter_gradients_match_pytorch(dtype, tol, torch):
    from minigpt.torch_reference import from_minigpt

    model = adapted(dtype, targets=("c_attn", "mlp.c_proj", "h.1.mlp.c_fc"))
    idx, targets = batch()
    logits, loss = model.forward(idx, targets)
    model.zero_grad()
    model.backward()
    torch_model = from_minigpt(model)
    t_logits, t_loss = torch_model(torch.from_numpy(idx), torch.from_numpy(targets))
    t_loss.backward()

    def relative(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    assert relative(logits, t_logits.detach().numpy()) < tol
    torch_grads = {name: p.grad.numpy() for name, p in torch_model.named_parameters()}
    assert set(model.lora.grads) == {n for n in torch_grads if ".lora_" in n}
    for name, grad in model.lora.grads.items():
        assert relative(grad, torch_grads[name]) < tol, name


# --- one model on every path ---------------------------------------------------------------


def test_adapters_start_as_the_identity():
    model = GPT(CONFIG, seed=0, dtype=np.float32)
    idx, _ = batch()
    before, _ = model.forward(idx)
    add_lora(model, rank=4, alpha=8.0)
    after, _ = model.forward(idx)
    np.testing.assert_array_equal(after, before)  # B = 0: W + s A 0 = W exactly
    assert np.abs(model.lora.params["h.0.attn.c_attn.lora_A"]).max() > 0  # A is not zero


def test_merged_model_gives_the_same_logits_in_float32():
    model = adapted(np.float32)
    idx, _ = batch()
    logits, _ = model.forward(idx)
    base_before = model.flat_params.copy()
    merged = merge(model)
    assert merged.lora is None
    merged_logits, _ = merged.forward(idx)
    assert np.abs(merged_logits - logits).max() < 1e-6
    np.testing.assert_array_equal(model.flat_params, base_before)  # merging left the base as it was
    assert not np.array_equal(merged.flat_params, base_before)  # and the merge changed the copy


def test_kv_cache_path_sees_the_adapters():
    model = adapted(np.float64).eval()
    idx, _ = batch(T=10)
    full, _ = model.forward(idx)
    cache = KVCache.for_model(model, 3)
    prompt = forward_with_cache(model, idx[:, :6], cache)
    np.testing.assert_allclose(prompt, full[:, :6], rtol=1e-12, atol=1e-12)
    for t in range(6, 10):
        step = forward_with_cache(model, idx[:, t:t + 1], cache)
        np.testing.assert_allclose(step[:, 0], full[:, t], rtol=1e-12, atol=1e-12)
    plain, _ = GPT(CONFIG, seed=0, dtype=np.float64).forward(idx)
    assert np.abs(plain - full).max() > 1e-3  # the adapters did change the logits


# --- training: only the adapters move -----------------------------------------------------


def test_training_the_adapters_leaves_the_base_bit_identical():
    model = GPT(CONFIG, seed=0, dtype=np.float32)
    lora = add_lora(model, rank=2, alpha=4.0)
    base = model.flat_params.copy()
    optimizer = AdamW(groups=[ParamGroup.of(lora)], lr=1e-2, weight_decay=0.1)
    idx, targets = batch()
    losses = []
    for _ in range(5):
        model.zero_grad()
        _, loss = model.forward(idx, targets)
        model.backward()
        clip_grad_norm([lora.flat_grads], 1.0)
        optimizer.step()
        losses.append(float(loss))
    np.testing.assert_array_equal(model.flat_params, base)
    assert losses[-1] < losses[0]  # and they did learn
    assert np.abs(lora.params["h.1.mlp.c_fc.lora_B"]).max() > 0


def test_rank_8_trains_at_most_5_percent_of_the_base_model():
    preset = PRESETS["base-bpe"]
    config = GPTConfig(preset.bpe_vocab_size, preset.block_size, preset.n_layer, preset.n_head, preset.n_embd)
    model = GPT(config)
    lora = add_lora(model, rank=8, alpha=16.0)
    C, L = config.n_embd, config.n_layer
    expected = L * 8 * ((C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C))  # r (in + out) per layer
    assert lora.num_params() == expected
    assert lora_module.trainable_fraction(model) <= 0.05


# --- saving and loading on their own ---------------------------------------------------------


def test_adapters_save_and_load_alone(tmp_path):
    model = adapted(np.float32)
    idx, _ = batch()
    logits, _ = model.forward(idx)
    save_adapters(model, tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "adapters-" + files[0][9:] and files[1] == "adapters.json"
    assert (tmp_path / files[0]).stat().st_size < model.flat_params.nbytes / 2  # small next to the base

    fresh = GPT(CONFIG, seed=0, dtype=np.float32)  # the same base
    load_adapters(fresh, tmp_path)
    np.testing.assert_array_equal(fresh.forward(idx)[0], logits)

    other = GPT(CONFIG, seed=9, dtype=np.float32)  # a different base: refused, untouched
    with pytest.raises(StoreError, match="other weights"):
        load_adapters(other, tmp_path)
    assert other.lora is None
    with pytest.raises(StoreError, match="another model"):
        load_adapters(GPT(GPTConfig(17, 12, 1, 2, 12), dtype=np.float32), tmp_path)


def test_a_damaged_adapter_file_is_named(tmp_path):
    model = adapted(np.float32)
    save_adapters(model, tmp_path)
    tensors = next(tmp_path.glob("adapters-*.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:-8])
    with pytest.raises(StoreError, match="truncated or altered"):
        load_adapters(GPT(CONFIG, seed=0, dtype=np.float32), tmp_path)


# --- clear errors ---------------------------------------------------------------------------


def test_target_names_pick_layers_like_peft():
    assert resolve_targets(CONFIG, ["c_attn"]) == ["h.0.attn.c_attn", "h.1.attn.c_attn"]
    assert resolve_targets(CONFIG, ["c_proj"]) == ["h.0.attn.c_proj", "h.0.mlp.c_proj",
                                                   "h.1.attn.c_proj", "h.1.mlp.c_proj"]
    assert resolve_targets(CONFIG, ["h.1.mlp.c_fc", "mlp.c_fc"]) == ["h.0.mlp.c_fc", "h.1.mlp.c_fc"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(targets=["c_atn"]), "'c_atn' names no linear layer"),
    (dict(targets=["h.2.attn.c_attn"]), "'h.2.attn.c_attn' names no linear layer"),
    (dict(targets=["wte"]), "'wte' names no linear layer"),
    (dict(targets=[]), "at least one target"),
    (dict(rank=0), "rank must be a positive integer"),
    (dict(rank=-2), "rank must be a positive integer"),
    (dict(rank=13), "rank 13 is larger than the layer h.0.attn.c_attn \\(12 x 36\\)"),
    (dict(alpha=0.0), "alpha must be a positive number"),
])
def test_bad_lora_settings_are_clear_errors(kwargs, message):
    model = GPT(CONFIG)
    settings = {"rank": 4, "alpha": 8.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        add_lora(model, **settings)
    assert model.lora is None  # nothing attached


def test_adapters_cannot_be_attached_twice():
    model = GPT(CONFIG)
    add_lora(model, rank=2, alpha=2.0)
    with pytest.raises(ValueError, match="already"):
        add_lora(model, rank=2, alpha=2.0)
